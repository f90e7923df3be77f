package enforce

import (
	"encoding/binary"
	"iter"
	"net/netip"
	"time"

	"github.com/moatsec/moat/enforce/internal/keytab"
)

// desiredSet maps each prefix moat wants in the kernel to its cover. IPv4
// prefixes, nearly all of a big blocklist, are keyed by 8 bytes instead of
// pkey's 18, in a keytab rather than a Go map: a million take 32 MB
// instead of 46-60. On a cold start, fresh memory is most of what loading
// a million bans costs.
type desiredSet struct {
	v4 *keytab.Map[cover]
	v6 map[pkey]cover
}

func newDesiredSet() desiredSet {
	return desiredSet{v4: keytab.New[cover](), v6: map[pkey]cover{}}
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
	return d.v4.Get(v4Key(k))
}

func (d desiredSet) put(k pkey, c cover) {
	if k.v6 {
		d.v6[k] = c
		return
	}
	d.v4.Put(v4Key(k), c)
}

func (d desiredSet) del(k pkey) {
	if k.v6 {
		delete(d.v6, k)
		return
	}
	d.v4.Delete(v4Key(k))
}

func (d desiredSet) len() int { return d.v4.Len() + len(d.v6) }

func (d desiredSet) all() iter.Seq2[pkey, cover] {
	return func(yield func(pkey, cover) bool) {
		for u, c := range d.v4.All() {
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

// pkey is a prefix as a map key. netip.Prefix holds a zone pointer, and
// hashing and GC-scanning a million of them dominated the cost of loading a
// million bans; this key has no pointer.
type pkey struct {
	a    [16]byte
	bits uint8
	v6   bool
}

func keyOf(p netip.Prefix) pkey {
	return pkey{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (k pkey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.a)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// stamp is an expiry in Unix nanoseconds, 0 for never: a time.Time holds a
// location pointer, and the desired set keeps one per ban.
type stamp int64

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	return stamp(t.UnixNano())
}

func (s stamp) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s))
}

// cover is the set of decisions covering one prefix; the kernel holds the
// prefix until the latest of their expiries. Nearly every prefix has one
// decision, kept inline; the rare further ones live in Reconciler.more, so
// the desired set holds no pointer and the garbage collector never scans
// it (at a million bans it was tens of megabytes on every cycle).
type cover struct {
	id    int64
	until stamp
}

// shared reports whether further decisions cover k, in r.more.
func (r *Reconciler) shared(k pkey) bool {
	if len(r.more) == 0 {
		return false
	}
	_, ok := r.more[k]
	return ok
}

func (r *Reconciler) expiryOf(k pkey, c cover) stamp {
	latest := c.until
	if latest == 0 || !r.shared(k) {
		return latest
	}
	for _, u := range r.more[k] {
		if u == 0 {
			return 0
		}
		latest = max(latest, u)
	}
	return latest
}

// coverGet returns the expiry of decision id, if it covers k.
func (r *Reconciler) coverGet(k pkey, c cover, id int64) (stamp, bool) {
	if c.id == id {
		return c.until, true
	}
	u, ok := r.more[k][id]
	return u, ok
}

func (r *Reconciler) coverSet(k pkey, c *cover, id int64, until stamp) {
	if c.id == id {
		c.until = until
		return
	}
	m := r.more[k]
	if m == nil {
		m = map[int64]stamp{}
		r.more[k] = m
	}
	m[id] = until
}

// coverRemove drops decision id and reports whether any decision is left.
func (r *Reconciler) coverRemove(k pkey, c *cover, id int64) bool {
	m, shared := r.more[k]
	if !shared {
		return c.id != id
	}
	if c.id == id {
		for other, u := range m {
			c.id, c.until = other, u
			id = other
			break
		}
	}
	delete(m, id)
	if len(m) == 0 {
		delete(r.more, k)
	}
	return true
}
