package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/unix"
)

// Ban is one entry of the filter: a single address (full-length prefix) or a
// range, and the CLOCK_BOOTTIME instant in ns at which it stops dropping (0 =
// never).
type Ban struct {
	Prefix    netip.Prefix
	ExpiresNs uint64
}

// batchSize bounds one batch syscall, so a huge update does not pin a huge
// kernel copy and errors point at a small slice.
const batchSize = 1 << 16

// keys groups prefixes by the map that holds them, in kernel key format.
type keys struct {
	single4 [][4]byte
	single6 []moatAddr6
	range4  []moatLpm4
	range6  []moatLpm6
}

// Indexes of the four ban maps, as returned by keys.add.
const (
	mapSingle4 = iota
	mapSingle6
	mapRange4
	mapRange6
)

func (k *keys) reset() {
	k.single4, k.single6, k.range4, k.range6 = k.single4[:0], k.single6[:0], k.range4[:0], k.range6[:0]
}

// add appends p's key to the slice of the map that holds it and returns
// that map's index.
func (k *keys) add(p netip.Prefix) (int, error) {
	if !p.IsValid() {
		return 0, fmt.Errorf("invalid prefix %v", p)
	}
	// The program sees IPv4-mapped packets as IPv4, so keys take the
	// canonical form Entries also returns.
	p = model.Canonical(p)
	a := p.Addr()
	switch {
	case a.Is4() && p.IsSingleIP():
		k.single4 = append(k.single4, a.As4())
		return mapSingle4, nil
	case a.Is4():
		k.range4 = append(k.range4, moatLpm4{Prefixlen: uint32(p.Bits()), Addr: a.As4()})
		return mapRange4, nil
	case p.IsSingleIP():
		k.single6 = append(k.single6, moatAddr6{Addr: a.As16()})
		return mapSingle6, nil
	default:
		k.range6 = append(k.range6, moatLpm6{Prefixlen: uint32(p.Bits()), Addr: a.As16()})
		return mapRange6, nil
	}
}

// Set adds bans or moves the expiry of bans already present.
func (f *Filter) Set(bans []Ban) error {
	k, vals := &f.setKeys, &f.setVals
	k.reset()
	for i := range vals {
		vals[i] = vals[i][:0]
	}
	for _, b := range bans {
		which, err := k.add(b.Prefix)
		if err != nil {
			return fmt.Errorf("set bans: %w", err)
		}
		vals[which] = append(vals[which], moatBan{ExpiresNs: b.ExpiresNs})
	}
	v4, v6, r4, r6 := vals[mapSingle4], vals[mapSingle6], vals[mapRange4], vals[mapRange6]
	for _, op := range []struct {
		m    *ebpf.Map
		n    int
		keys func(i, j int) any
		vals func(i, j int) any
	}{
		{f.objs.MoatSingle4, len(v4), func(i, j int) any { return k.single4[i:j] }, func(i, j int) any { return v4[i:j] }},
		{f.objs.MoatSingle6, len(v6), func(i, j int) any { return k.single6[i:j] }, func(i, j int) any { return v6[i:j] }},
		{f.objs.MoatRange4, len(r4), func(i, j int) any { return k.range4[i:j] }, func(i, j int) any { return r4[i:j] }},
		{f.objs.MoatRange6, len(r6), func(i, j int) any { return k.range6[i:j] }, func(i, j int) any { return r6[i:j] }},
	} {
		for i := 0; i < op.n; i += batchSize {
			j := min(i+batchSize, op.n)
			if err := batchUpdate(op.m, op.keys(i, j), op.vals(i, j), j-i); err != nil {
				return fmt.Errorf("set bans in %s: %w", mapName(op.m), err)
			}
		}
	}
	return nil
}

// ErrMapFull is wrapped by Set when a map has no room left; the bans
// before the failing one are in place.
var ErrMapFull = errors.New("ban map full")

func batchUpdate(m *ebpf.Map, keys, vals any, n int) error {
	done, err := m.BatchUpdate(keys, vals, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		err = forEach(keys, vals, n, func(k, v any) error { return m.Update(k, v, ebpf.UpdateAny) })
	}
	// A hash map reports E2BIG when full, an LPM trie ENOSPC.
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("%w (capacity %d, %d of %d written): %w", ErrMapFull, m.MaxEntries(), done, n, err)
	}
	if err != nil {
		return fmt.Errorf("batch update (%d of %d written): %w", done, n, err)
	}
	return nil
}

// Delete removes the given prefixes. Prefixes that are not present are
// ignored; the count of removed ones is returned.
func (f *Filter) Delete(prefixes []netip.Prefix) (int, error) {
	var k keys
	for _, p := range prefixes {
		if _, err := k.add(p); err != nil {
			return 0, fmt.Errorf("delete bans: %w", err)
		}
	}
	total := 0
	for _, op := range []struct {
		m    *ebpf.Map
		n    int
		keys func(i, j int) any
	}{
		{f.objs.MoatSingle4, len(k.single4), func(i, j int) any { return k.single4[i:j] }},
		{f.objs.MoatSingle6, len(k.single6), func(i, j int) any { return k.single6[i:j] }},
		{f.objs.MoatRange4, len(k.range4), func(i, j int) any { return k.range4[i:j] }},
		{f.objs.MoatRange6, len(k.range6), func(i, j int) any { return k.range6[i:j] }},
	} {
		for i := 0; i < op.n; i += batchSize {
			j := min(i+batchSize, op.n)
			n, err := batchDelete(op.m, op.keys, i, j)
			total += n
			if err != nil {
				return total, fmt.Errorf("delete bans from %s: %w", mapName(op.m), err)
			}
		}
	}
	return total, nil
}

// batchDelete deletes keys(i, j). The kernel stops a batch at the first
// absent key and reports how far it got, so the absent key is skipped and
// the rest resubmitted.
func batchDelete(m *ebpf.Map, keys func(i, j int) any, i, j int) (int, error) {
	deleted := 0
	for i < j {
		n, err := m.BatchDelete(keys(i, j), nil)
		deleted += n
		switch {
		case err == nil:
			return deleted, nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			i += n + 1
		case errors.Is(err, ebpf.ErrNotSupported):
			for ; i < j; i++ {
				err := m.Delete(indexOne(keys, i))
				if err == nil {
					deleted++
				} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
					return deleted, fmt.Errorf("delete: %w", err)
				}
			}
			return deleted, nil
		default:
			return deleted, fmt.Errorf("batch delete: %w", err)
		}
	}
	return deleted, nil
}

// indexOne returns element i of the slice keys(i, i+1) as a single key.
func indexOne(keys func(i, j int) any, i int) any {
	switch s := keys(i, i+1).(type) {
	case [][4]byte:
		return s[0]
	case []moatAddr6:
		return s[0]
	case []moatLpm4:
		return s[0]
	case []moatLpm6:
		return s[0]
	}
	panic("bpf: unknown key type")
}

func forEach(keys, vals any, n int, fn func(k, v any) error) error {
	for i := range n {
		var k, v any
		switch s := keys.(type) {
		case [][4]byte:
			k = s[i]
		case []moatAddr6:
			k = s[i]
		case []moatLpm4:
			k = s[i]
		case []moatLpm6:
			k = s[i]
		}
		v = vals.([]moatBan)[i]
		if err := fn(k, v); err != nil {
			return fmt.Errorf("update: %w", err)
		}
	}
	return nil
}

func mapName(m *ebpf.Map) string {
	if info, err := m.Info(); err == nil {
		return info.Name
	}
	return "map"
}

// Entries returns every ban the maps hold, expired ones included.
func (f *Filter) Entries() ([]Ban, error) {
	var out []Ban
	var err error
	if out, err = dump(f.objs.MoatSingle4, out, func(k [4]byte) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4(k), 32)
	}); err != nil {
		return nil, err
	}
	if out, err = dump(f.objs.MoatSingle6, out, func(k moatAddr6) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom16(k.Addr), 128)
	}); err != nil {
		return nil, err
	}
	if out, err = dump(f.objs.MoatRange4, out, func(k moatLpm4) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen))
	}); err != nil {
		return nil, err
	}
	if out, err = dump(f.objs.MoatRange6, out, func(k moatLpm6) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen))
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// dump appends all entries of m to out, in batches where the kernel can.
func dump[K any](m *ebpf.Map, out []Ban, prefix func(K) netip.Prefix) ([]Ban, error) {
	const chunk = 8192
	ks := make([]K, chunk)
	vs := make([]moatBan, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, ks, vs, nil)
		for i := range n {
			out = append(out, Ban{Prefix: prefix(ks[i]), ExpiresNs: vs[i].ExpiresNs})
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return dumpIterate(m, out[:len(out)-n], prefix)
		case err != nil:
			return nil, fmt.Errorf("list %s: %w", mapName(m), err)
		}
	}
}

func dumpIterate[K any](m *ebpf.Map, out []Ban, prefix func(K) netip.Prefix) ([]Ban, error) {
	var k K
	var v moatBan
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Ban{Prefix: prefix(k), ExpiresNs: v.ExpiresNs})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", mapName(m), err)
	}
	return out, nil
}

// Counts returns how many entries each ban map holds (expired ones
// included), in the order single4, single6, range4, range6. Unlike the
// other methods it is safe to call while another goroutine writes the
// maps: it uses only the map descriptors Load opened and buffers of its own.
func (f *Filter) Counts() ([4]int, error) {
	var out [4]int
	var err error
	if out[mapSingle4], err = count[[4]byte](f.objs.MoatSingle4); err != nil {
		return out, err
	}
	if out[mapSingle6], err = count[moatAddr6](f.objs.MoatSingle6); err != nil {
		return out, err
	}
	if out[mapRange4], err = count[moatLpm4](f.objs.MoatRange4); err != nil {
		return out, err
	}
	if out[mapRange6], err = count[moatLpm6](f.objs.MoatRange6); err != nil {
		return out, err
	}
	return out, nil
}

// count counts m's entries in batches where the kernel can, else one key
// at a time.
func count[K any](m *ebpf.Map) (int, error) {
	const chunk = 4096
	ks := make([]K, chunk)
	vs := make([]moatBan, chunk)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, ks, vs, nil)
		total += n
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return total, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			total = 0
			var k K
			it := m.Iterate()
			for it.Next(&k, &vs[0]) {
				total++
			}
			if err := it.Err(); err != nil {
				return 0, fmt.Errorf("count %s: %w", mapName(m), err)
			}
			return total, nil
		case err != nil:
			return 0, fmt.Errorf("count %s: %w", mapName(m), err)
		}
	}
}
