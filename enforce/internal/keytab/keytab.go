// Package keytab is a hash table from uint64 keys to small values without
// pointers, for the indexes that hold one entry per ban: a million of them
// in a Go map take 1.5 to 2.5 times the bytes of their entries (the
// runtime's tables run between 7/16 and 7/8 full, plus a control byte per
// slot), here about 1.35 times.
//
// Entries sit side by side in open-addressed shards probed linearly. Each
// shard grows by a quarter when over 13/16 full, so the table stays
// 65-81 % full, and a shard holds 1/256 of the entries: growing one copies
// a few kilobytes, never the whole table while a ban waits. Keys are mixed
// with a random seed, so an attacker choosing addresses cannot choose the
// probe chains either.
package keytab

import (
	"iter"
	"math/bits"
	"math/rand/v2"
	"unsafe"
)

const (
	shardBits = 8
	numShards = 1 << shardBits
	minSlots  = 8
)

// Map maps uint64 keys to values of type V, which should hold no pointers:
// the table is one allocation per shard, scanned by the garbage collector
// only if V has pointers. The zero Map is not usable; call New.
type Map[V any] struct {
	seed   [2]uint64
	shards [numShards]shard[V]
	n      int
	// Key 0 marks an empty slot, so its entry lives here.
	zero    V
	hasZero bool
}

type entry[V any] struct {
	k uint64
	v V
}

type shard[V any] struct {
	slots []entry[V]
	n     int
}

// New returns an empty map.
func New[V any]() *Map[V] {
	return &Map[V]{seed: [2]uint64{rand.Uint64(), rand.Uint64() | 1}}
}

// hash mixes k with the seed (one round of wyhash's multiply-fold).
func (m *Map[V]) hash(k uint64) uint64 {
	hi, lo := bits.Mul64(k^m.seed[0], m.seed[1])
	return hi ^ lo
}

// at returns h's shard and its first slot there.
func (m *Map[V]) at(h uint64) (*shard[V], int) {
	s := &m.shards[h>>(64-shardBits)]
	i, _ := bits.Mul64(h<<shardBits, uint64(len(s.slots)))
	return s, int(i)
}

// find returns k's shard and slot index there, or -1.
func (m *Map[V]) find(k uint64) (*shard[V], int) {
	s, i := m.at(m.hash(k))
	n := len(s.slots)
	if n == 0 {
		return s, -1
	}
	for {
		switch s.slots[i].k {
		case k:
			return s, i
		case 0:
			return s, -1
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Len is the number of entries.
func (m *Map[V]) Len() int { return m.n }

// Get returns k's value.
func (m *Map[V]) Get(k uint64) (V, bool) {
	if k == 0 {
		return m.zero, m.hasZero
	}
	if s, i := m.find(k); i >= 0 {
		return s.slots[i].v, true
	}
	var zero V
	return zero, false
}

// Put sets k's value and reports whether k had one.
func (m *Map[V]) Put(k uint64, v V) (had bool) {
	if k == 0 {
		had = m.hasZero
		if !had {
			m.n++
		}
		m.zero, m.hasZero = v, true
		return had
	}
	h := m.hash(k)
	// Grown before the probe, so that one probe finds k or its place; a
	// shard at the bound grows a little early when k is already there.
	if s := &m.shards[h>>(64-shardBits)]; (s.n+1)*16 > len(s.slots)*13 {
		m.resize(s, max(minSlots, len(s.slots)+len(s.slots)/4))
	}
	s, i := m.at(h)
	n := len(s.slots)
	for {
		e := &s.slots[i]
		switch e.k {
		case k:
			e.v = v
			return true
		case 0:
			*e = entry[V]{k, v}
			s.n++
			m.n++
			return false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// insert places e, absent from s, in its first free slot.
func (m *Map[V]) insert(s *shard[V], e entry[V]) {
	n := len(s.slots)
	_, i := m.at(m.hash(e.k))
	for s.slots[i].k != 0 {
		if i++; i == n {
			i = 0
		}
	}
	s.slots[i] = e
}

// resize moves s's entries to a table of n slots.
func (m *Map[V]) resize(s *shard[V], n int) {
	old := s.slots
	s.slots = nil
	if n > 0 {
		s.slots = make([]entry[V], n)
	}
	for _, e := range old {
		if e.k != 0 {
			m.insert(s, e)
		}
	}
}

// Delete removes k and reports whether it was there.
func (m *Map[V]) Delete(k uint64) bool {
	if k == 0 {
		if !m.hasZero {
			return false
		}
		var zero V
		m.zero, m.hasZero = zero, false
		m.n--
		return true
	}
	s, i := m.find(k)
	if i < 0 {
		return false
	}
	m.shiftBack(s, i)
	s.n--
	m.n--
	// A shard a quarter full shrinks back to 5/8, so that bans expiring
	// give their memory back.
	if n := len(s.slots); s.n == 0 {
		s.slots = nil
	} else if n > minSlots && s.n*4 < n {
		m.resize(s, max(minSlots, s.n*8/5))
	}
	return true
}

// shiftBack empties slot i, moving later entries of the probe run back so
// that no lookup stops early at the hole.
func (m *Map[V]) shiftBack(s *shard[V], i int) {
	n := len(s.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		k := s.slots[j].k
		if k == 0 {
			break
		}
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		_, h := m.at(m.hash(k))
		if i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = entry[V]{}
}

// All yields every entry, in no particular order. The map must not change
// during the iteration.
func (m *Map[V]) All() iter.Seq2[uint64, V] {
	return func(yield func(uint64, V) bool) {
		if m.hasZero && !yield(0, m.zero) {
			return
		}
		for si := range m.shards {
			for _, e := range m.shards[si].slots {
				if e.k != 0 && !yield(e.k, e.v) {
					return
				}
			}
		}
	}
}

// Bytes is the memory the map's tables take.
func (m *Map[V]) Bytes() int {
	var e entry[V]
	n := 0
	for si := range m.shards {
		n += cap(m.shards[si].slots)
	}
	return n * int(unsafe.Sizeof(e))
}
