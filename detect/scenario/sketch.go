package scenario

import (
	"hash/maphash"
	"math/bits"
	"time"
)

// sketch counts, for a leaky scenario whose bucket table is full, the
// events of every partition that has no bucket: a count-min sketch whose
// cells are leaky buckets themselves. A cell holds the time its level
// drains to zero, so it leaks at the scenario's leakspeed with no work
// per tick, and the level of a cell is the level of the merged stream of
// every key hashed to it. Merging streams never lowers a leaky level, so
// the smallest of a key's cells bounds its true level from above: a key
// that would overflow its bucket cannot stay below the promotion
// threshold, whatever the flood around it.
//
// Each cell also remembers its heaviest recent key (a fingerprint and that
// key's own drain time, as HeavyKeeper does). That record counts one key
// only, so it bounds the key's level from below: it seeds the bucket of a
// promoted key, so the events it poured while unbucketed still count,
// but a benign key is never seeded with its neighbours' events.
type sketch struct {
	mask  uint64
	drain []int64 // sketchDepth rows of width cells: unix ns the cell empties
	owner []uint32
	own   []int64 // the owner's own drain time
	seed  maphash.Seed
	// until is when every cell has drained: the sketch then holds nothing.
	until int64
}

const (
	sketchDepth = 4
	// sketchWidth cells per row: 5 MiB a scenario, allocated on the
	// first flood. At 1,500 new keys a second, a cell of a 10s leak
	// holds the noise of 0.2 other events, one of a 60s leak 1.4.
	sketchWidth = 1 << 16
)

func newSketch(seed maphash.Seed) *sketch {
	n := sketchDepth * sketchWidth
	return &sketch{
		mask:  sketchWidth - 1,
		drain: make([]int64, n),
		owner: make([]uint32, n),
		own:   make([]int64, n),
		seed:  seed,
	}
}

// sketchKey is a key's cells and fingerprint.
type sketchKey struct {
	idx [sketchDepth]int
	fp  uint32
}

func (s *sketch) key(k string) sketchKey {
	h := maphash.String(s.seed, k)
	lo, hi := h&0xffffffff, h>>32|1
	var sk sketchKey
	for r := range sketchDepth {
		sk.idx[r] = r*sketchWidth + int((lo+uint64(r)*hi)&s.mask)
	}
	// 0 marks a free cell.
	sk.fp = uint32(bits.RotateLeft64(h*0x9e3779b97f4a7c15, 32)) | 1
	return sk
}

// estimate is the upper bound of the key's level at t, in leak time, as
// it would be after adding d.
func (s *sketch) estimate(k sketchKey, t int64, d time.Duration) time.Duration {
	est := int64(-1)
	for _, i := range k.idx {
		e := max(s.drain[i], t) + int64(d) - t
		if est < 0 || e < est {
			est = e
		}
	}
	return time.Duration(est)
}

// lower is the lower bound of the key's level at t: its own count in the
// cells it owns.
func (s *sketch) lower(k sketchKey, t int64) time.Duration {
	var lv int64
	for _, i := range k.idx {
		if s.owner[i] == k.fp {
			lv = max(lv, s.own[i]-t)
		}
	}
	return time.Duration(lv)
}

// add pours d of leak time for the key at t. The key takes the ownership
// of a cell whose owner has drained below half an event: an owner between
// two events of its burst keeps its record (taking a cell as soon as the
// owner leaked a little below one event let a passing key reset an
// attacker's count, and 2 of a million attackers escaped); an owner's
// record only ever grows by its own events.
func (s *sketch) add(k sketchKey, t int64, d time.Duration) {
	for _, i := range k.idx {
		e := max(s.drain[i], t) + int64(d)
		s.drain[i] = e
		s.until = max(s.until, e)
		switch {
		case s.owner[i] == k.fp:
			s.own[i] = max(s.own[i], t) + int64(d)
		case s.own[i]-t < int64(d)/2:
			s.owner[i], s.own[i] = k.fp, t+int64(d)
		}
	}
}

// forget drops the key's ownership records: it has a bucket now, and an
// eviction adds its level back.
func (s *sketch) forget(k sketchKey) {
	for _, i := range k.idx {
		if s.owner[i] == k.fp {
			s.owner[i], s.own[i] = 0, 0
		}
	}
}
