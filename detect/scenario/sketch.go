package scenario

import (
	"hash/maphash"
	"time"
)

// sketch counts, for a leaky scenario whose bucket table is full, the
// events of every partition that has no bucket. It has two parts.
//
// levels is exact: each key's drain time (when its level reaches zero)
// under a 64-bit fingerprint, 16 bytes a key against about 800 for a
// bucket. It seeds the bucket of a promoted key with the level it reached
// while unbucketed, and a key whose next event would overflow is promoted
// whatever the table holds, so no source that exceeds the capacity
// escapes while levels has room. Its size is bounded (maxLevels); when
// full, a new key takes the place of the nearly drained key beside it,
// which then counts from zero again.
//
// cells is a count-min sketch whose cells are leaky buckets themselves:
// a cell holds the time its level drains to zero, so it leaks at the
// scenario's leakspeed with no work per tick, and its level is that of
// the merged stream of every key hashed to it. Merging streams never
// lowers a leaky level, so the smallest of a key's cells bounds its level
// from above even after levels dropped the key: a key that would
// overflow its bucket cannot stay below the promotion threshold, whatever
// the flood around it.
type sketch struct {
	mask  uint64
	cells []int64 // sketchDepth rows of sketchWidth cells: unix ns each empties
	seed  maphash.Seed
	// until is when every cell has drained: the sketch then holds nothing.
	until int64

	levels    []levelSlot // open addressing, linear probing
	used      int         // slots with a fingerprint, drained or not
	maxLevels int         // slots levels may grow to
	steals    uint64      // keys levels dropped for lack of room
	// sinceRebuild counts the keys added since the last rebuild: at full
	// size a rebuild is tried once an eighth of the slots was taken
	// again, so that a flood which keeps levels full pays for its scans.
	sinceRebuild int
}

// levelSlot is one key of levels. fp 0 is a slot never used; drain at or
// before now is a key that has leaked empty (or was forgotten), whose slot
// a new key may reuse.
type levelSlot struct {
	fp    uint64
	drain int64
}

const (
	sketchDepth = 4
	// sketchWidth cells per row: 2 MiB a scenario, allocated on the first
	// flood. At 1,500 new keys a second, a cell of a 10s leak holds the
	// noise of 0.2 other events, one of a 60s leak 1.4.
	sketchWidth = 1 << 16
	// defaultMaxLevels slots (16 MiB) keep 786k unbucketed keys exact, a
	// flood of 13k new sources a second for a minute-long leak.
	defaultMaxLevels = 1 << 20
	minLevels        = 1 << 12
	// stealWindow is how many slots of a full levels a new key compares
	// for the one nearest to drained.
	stealWindow = 8
)

func newSketch(seed maphash.Seed, maxLevels int) *sketch {
	return &sketch{
		mask:      sketchWidth - 1,
		cells:     make([]int64, sketchDepth*sketchWidth),
		seed:      seed,
		levels:    make([]levelSlot, min(minLevels, maxLevels)),
		maxLevels: maxLevels,
	}
}

// sketchKey is a key's cells and fingerprint.
type sketchKey struct {
	idx [sketchDepth]int
	fp  uint64
}

func (s *sketch) key(k string) sketchKey {
	h := maphash.String(s.seed, k)
	lo, hi := h&0xffffffff, h>>32|1
	var sk sketchKey
	for r := range sketchDepth {
		sk.idx[r] = r*sketchWidth + int((lo+uint64(r)*hi)&s.mask)
	}
	sk.fp = h | 1 // never 0, the free slot
	return sk
}

// estimate is the upper bound of the key's level at t, in leak time, as
// it would be after adding d.
func (s *sketch) estimate(k sketchKey, t int64, d time.Duration) time.Duration {
	est := int64(-1)
	for _, i := range k.idx {
		e := max(s.cells[i], t) + int64(d) - t
		if est < 0 || e < est {
			est = e
		}
	}
	return time.Duration(est)
}

// lower is the key's own level at t: exact unless levels dropped it for
// lack of room, and then an underestimate, never more than its true level.
func (s *sketch) lower(k sketchKey, t int64) time.Duration {
	if i, ok := s.find(k.fp); ok {
		return time.Duration(max(s.levels[i].drain-t, 0))
	}
	return 0
}

// add pours d of leak time for the key at t.
func (s *sketch) add(k sketchKey, t int64, d time.Duration) {
	for _, i := range k.idx {
		e := max(s.cells[i], t) + int64(d)
		s.cells[i] = e
		s.until = max(s.until, e)
	}
	i := s.slot(k.fp, t)
	s.levels[i].drain = max(s.levels[i].drain, t) + int64(d)
}

// forget drops the key's level: it has a bucket now, and an eviction adds
// its level back.
func (s *sketch) forget(k sketchKey) {
	if i, ok := s.find(k.fp); ok {
		s.levels[i].drain = 0
	}
}

func (s *sketch) home(fp uint64) int { return int(fp>>32) & (len(s.levels) - 1) }

func (s *sketch) find(fp uint64) (int, bool) {
	m := len(s.levels) - 1
	for i := s.home(fp); ; i = (i + 1) & m {
		switch s.levels[i].fp {
		case fp:
			return i, true
		case 0:
			return 0, false
		}
	}
}

// slot returns the slot holding fp at t, taking one for it if it has none:
// the first drained slot on its probe path, else a free one while levels
// is at most three quarters used, else, at full size, the slot nearest to
// drained within stealWindow of its home.
func (s *sketch) slot(fp uint64, t int64) int {
	m := len(s.levels) - 1
	reuse := -1
	for i := s.home(fp); ; i = (i + 1) & m {
		sl := &s.levels[i]
		switch {
		case sl.fp == fp:
			return i
		case sl.fp == 0:
			if reuse >= 0 {
				s.levels[reuse] = levelSlot{fp: fp, drain: t}
				s.sinceRebuild++
				return reuse
			}
			if (s.used+1)*4 <= len(s.levels)*3 {
				s.used++
				s.sinceRebuild++
				*sl = levelSlot{fp: fp, drain: t}
				return i
			}
			if (len(s.levels) < s.maxLevels || s.sinceRebuild*8 >= len(s.levels)) && s.rebuild(t) {
				return s.slot(fp, t)
			}
			return s.steal(fp, t)
		case reuse < 0 && sl.drain <= t:
			reuse = i
		}
	}
}

// rebuild rehashes the keys still counting at t, into twice the slots
// while they would fill more than half and levels may grow. It reports
// false when it could neither drop a key nor grow.
func (s *sketch) rebuild(t int64) bool {
	live := 0
	for _, sl := range s.levels {
		if sl.fp != 0 && sl.drain > t {
			live++
		}
	}
	n := len(s.levels)
	for live*2 > n && n < s.maxLevels {
		n *= 2
	}
	s.sinceRebuild = 0
	if live == s.used && n == len(s.levels) {
		return false
	}
	old := s.levels
	s.levels, s.used = make([]levelSlot, n), live
	m := n - 1
	for _, sl := range old {
		if sl.fp == 0 || sl.drain <= t {
			continue
		}
		i := s.home(sl.fp)
		for s.levels[i].fp != 0 {
			i = (i + 1) & m
		}
		s.levels[i] = sl
	}
	return true
}

// steal gives fp the slot nearest to drained among the stealWindow
// taken slots from its home: levels is full of keys still counting, and
// the one losing its level is the least likely to be on its way to an
// overflow. Free slots stay free, so that every probe ends.
func (s *sketch) steal(fp uint64, t int64) int {
	m := len(s.levels) - 1
	best := -1
	for i, n := s.home(fp), 0; n < stealWindow; i = (i + 1) & m {
		if s.levels[i].fp == 0 {
			continue
		}
		if best < 0 || s.levels[i].drain < s.levels[best].drain {
			best = i
		}
		n++
	}
	s.steals++
	s.sinceRebuild++
	s.levels[best] = levelSlot{fp: fp, drain: t}
	return best
}
