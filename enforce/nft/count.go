package nft

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"

	"github.com/moatsec/moat/internal/unix"
)

// CountElements reports how many elements each of moat's sets holds in the
// kernel now, as a dump of the set reads them: what the kernel enforces,
// not what moat believes it wrote. A range (two kernel elements, start and
// end) counts once; elements timed out but not yet collected count, since
// the kernel still holds them. A set someone deleted counts 0.
//
// Unlike the other methods it is safe to call while the reconciler writes:
// it dials its own socket and reads only what Open fixed. A dump of a
// million-element set takes seconds of kernel time, so callers cache it.
func (b *Backend) CountElements(ctx context.Context) (map[string]int, error) {
	d, err := dialRaw(b.cfg)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var c elementCounter
	out := make(map[string]int, 4)
	for _, s := range []*nftables.Set{b.single[fam4], b.single[fam6], b.ranged[fam4], b.ranged[fam6]} {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nft: count elements: %w", err)
		}
		n, err := c.count(d, b.table, s.Name)
		if errors.Is(err, unix.ENOENT) {
			n, err = 0, nil
		}
		if err != nil {
			return nil, fmt.Errorf("nft: count elements of set %s: %w", s.Name, err)
		}
		out[s.Name] = n
	}
	return out, nil
}

// elementCounter keeps each element's key, packed, to count the distinct
// ones: a hash set dump that races a resize of the kernel's table repeats
// some elements and misses others (see readElements), and only the keys
// tell. An IPv4 element takes 8 bytes here, instead of the 50 or so of a
// decoded element.
type elementCounter struct {
	v4 []uint64 // address<<1 | end
	v6 []key6
	n  int // elements read
}

type key6 struct {
	a   [16]byte
	end bool
}

// count dumps one set and returns its distinct elements that are not
// interval ends. A dump with repeats is taken again (three times at most)
// and the union counted, as readElements does.
func (c *elementCounter) count(d *rawConn, t *nftables.Table, set string) (int, error) {
	var union *elementCounter
	for attempt := 0; ; attempt++ {
		c.v4, c.v6, c.n = c.v4[:0], c.v6[:0], 0
		if err := d.dumpEach(t, set, c.add); err != nil {
			return 0, err
		}
		repeats := c.compact() < c.n
		if !repeats && union == nil {
			return c.starts(), nil
		}
		if union == nil {
			union = &elementCounter{}
		}
		union.v4 = append(union.v4, c.v4...)
		union.v6 = append(union.v6, c.v6...)
		union.compact()
		if !repeats || attempt == 2 {
			return union.starts(), nil
		}
	}
}

// compact sorts and dedups the keys and returns how many are left.
func (c *elementCounter) compact() int {
	slices.Sort(c.v4)
	c.v4 = slices.Compact(c.v4)
	slices.SortFunc(c.v6, func(x, y key6) int {
		if r := bytes.Compare(x.a[:], y.a[:]); r != 0 {
			return r
		}
		return cmp.Compare(boolInt(x.end), boolInt(y.end))
	})
	c.v6 = slices.Compact(c.v6)
	return len(c.v4) + len(c.v6)
}

// starts counts the keys that are not interval ends.
func (c *elementCounter) starts() int {
	n := 0
	for _, k := range c.v4 {
		if k&1 == 0 {
			n++
		}
	}
	for _, k := range c.v6 {
		if !k.end {
			n++
		}
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// add records the elements of one NEWSETELEM message. It walks the
// attributes by hand: the netlink decoder allocates for every nested
// attribute, several per element, and a count reads a million of them.
func (c *elementCounter) add(msg []byte) error {
	return walkAttrs(msg, func(typ uint16, list []byte) error {
		if typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return nil
		}
		return walkAttrs(list, func(typ uint16, elem []byte) error {
			if typ != unix.NFTA_LIST_ELEM {
				return nil
			}
			var key []byte
			var end bool
			err := walkAttrs(elem, func(typ uint16, v []byte) error {
				switch typ {
				case unix.NFTA_SET_ELEM_KEY:
					return walkAttrs(v, func(typ uint16, data []byte) error {
						if typ == unix.NFTA_DATA_VALUE {
							key = data
						}
						return nil
					})
				case unix.NFTA_SET_ELEM_FLAGS:
					if len(v) < 4 {
						return errors.New("short element flags")
					}
					end = binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
				}
				return nil
			})
			if err != nil {
				return err
			}
			c.n++
			switch len(key) {
			case 4:
				k := uint64(binary.BigEndian.Uint32(key)) << 1
				if end {
					k |= 1
				}
				c.v4 = append(c.v4, k)
			case 16:
				c.v6 = append(c.v6, key6{a: [16]byte(key), end: end})
			default:
				return fmt.Errorf("element key of %d bytes", len(key))
			}
			return nil
		})
	})
}

// walkAttrs calls fn with the type (flags masked off) and payload of each
// netlink attribute in b.
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= unix.NLA_HDRLEN {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.NLA_HDRLEN || l > len(b) {
			return fmt.Errorf("netlink attribute of length %d in %d bytes", l, len(b))
		}
		if err := fn(typ, b[unix.NLA_HDRLEN:l]); err != nil {
			return err
		}
		b = b[min(nlaAlign(l), len(b)):]
	}
	return nil
}

func nlaAlign(l int) int { return (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }
