package enforce

import (
	"encoding/binary"
	"iter"
)

// desiredSet maps each prefix moat wants in the kernel to its cover. IPv4
// prefixes, nearly all of a big blocklist, are keyed by 8 bytes instead of
// pkey's 18: a slot takes 24 bytes instead of 48. On a cold start, fresh
// memory is most of what loading a million bans costs.
type desiredSet struct {
	v4 map[uint64]cover
	v6 map[pkey]cover
}

func newDesiredSet() desiredSet {
	return desiredSet{v4: map[uint64]cover{}, v6: map[pkey]cover{}}
}

// v4Key packs an IPv4 prefix: address in the high bits, length in the low
// byte.
func v4Key(k pkey) uint64 {
	return uint64(binary.BigEndian.Uint32(k.a[12:]))<<8 | uint64(k.bits)
}

func fromV4Key(u uint64) pkey {
	k := pkey{bits: uint8(u)}
	k.a[10], k.a[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(k.a[12:], uint32(u>>8))
	return k
}

func (d desiredSet) get(k pkey) (cover, bool) {
	if k.v6 {
		c, ok := d.v6[k]
		return c, ok
	}
	c, ok := d.v4[v4Key(k)]
	return c, ok
}

func (d desiredSet) put(k pkey, c cover) {
	if k.v6 {
		d.v6[k] = c
		return
	}
	d.v4[v4Key(k)] = c
}

func (d desiredSet) del(k pkey) {
	if k.v6 {
		delete(d.v6, k)
		return
	}
	delete(d.v4, v4Key(k))
}

func (d desiredSet) len() int { return len(d.v4) + len(d.v6) }

func (d desiredSet) all() iter.Seq2[pkey, cover] {
	return func(yield func(pkey, cover) bool) {
		for u, c := range d.v4 {
			if !yield(fromV4Key(u), c) {
				return
			}
		}
		for k, c := range d.v6 {
			if !yield(k, c) {
				return
			}
		}
	}
}
