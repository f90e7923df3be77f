package nft

import (
	"container/heap"
	"net/netip"
	"slices"
	"time"
)

// segment is an inclusive address range with one expiry (zero = never).
// Interval sets reject overlapping elements, so the ranges moat holds are
// kept as disjoint segments.
type segment struct {
	start, end netip.Addr
	expiry     time.Time
}

// laterExpiry reports whether a outlives b; the zero time is "never".
func laterExpiry(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return !b.IsZero()
	case b.IsZero():
		return false
	default:
		return a.After(b)
	}
}

// sameSegmentExpiry compares expiries read back from the kernel, which keeps
// milliseconds in jiffies, with the exact ones moat asked for.
func sameSegmentExpiry(a, b time.Time, tol time.Duration) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	d := a.Sub(b)
	return d <= tol && d >= -tol
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

type activeRange struct {
	end    netip.Addr
	expiry time.Time
}

type expiryMaxHeap []activeRange

func (h expiryMaxHeap) Len() int           { return len(h) }
func (h expiryMaxHeap) Less(i, j int) bool { return laterExpiry(h[i].expiry, h[j].expiry) }
func (h expiryMaxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryMaxHeap) Push(x any)        { *h = append(*h, x.(activeRange)) }
func (h *expiryMaxHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// normalize turns possibly overlapping prefixes of one family into sorted,
// disjoint segments. Every address gets the latest expiry of the prefixes
// that cover it, and neighbours with equal expiry are merged, so the kernel
// holds as few interval elements as possible. Entries already expired at now
// are left out: the kernel removes them on its own.
func normalize(ranges map[netip.Prefix]time.Time, now time.Time) []segment {
	type item struct {
		start, end netip.Addr
		expiry     time.Time
	}
	items := make([]item, 0, len(ranges))
	bounds := make([]netip.Addr, 0, 2*len(ranges))
	for p, exp := range ranges {
		if !exp.IsZero() && !exp.After(now) {
			continue
		}
		it := item{start: p.Masked().Addr(), end: lastAddr(p), expiry: exp}
		items = append(items, it)
		bounds = append(bounds, it.start)
		if n := it.end.Next(); n.IsValid() {
			bounds = append(bounds, n)
		}
	}
	if len(items) == 0 {
		return nil
	}
	slices.SortFunc(items, func(a, b item) int { return a.start.Compare(b.start) })
	slices.SortFunc(bounds, func(a, b netip.Addr) int { return a.Compare(b) })
	bounds = slices.Compact(bounds)

	var segs []segment
	var h expiryMaxHeap
	next := 0
	for i, b := range bounds {
		for next < len(items) && items[next].start == b {
			heap.Push(&h, activeRange{end: items[next].end, expiry: items[next].expiry})
			next++
		}
		// Lazy removal: only the top decides, so only a finished top matters.
		for h.Len() > 0 && h[0].end.Less(b) {
			heap.Pop(&h)
		}
		if h.Len() == 0 {
			continue
		}
		var end netip.Addr
		if i+1 < len(bounds) {
			end = bounds[i+1].Prev()
		} else {
			// Only a prefix reaching the top of the address space gets here.
			end = h[0].end
		}
		exp := h[0].expiry
		if n := len(segs); n > 0 && segs[n-1].end.Next() == b && segs[n-1].expiry.Equal(exp) {
			segs[n-1].end = end
			continue
		}
		segs = append(segs, segment{start: b, end: end, expiry: exp})
	}
	return segs
}

// diffSegments returns the segments to remove from have and to add from
// want. A segment with the same bounds and an expiry within tol is kept.
func diffSegments(have, want []segment, tol time.Duration) (del, add []segment) {
	type key struct{ start, end netip.Addr }
	idx := make(map[key]time.Time, len(have))
	for _, s := range have {
		idx[key{s.start, s.end}] = s.expiry
	}
	keep := make(map[key]bool, len(want))
	for _, s := range want {
		k := key{s.start, s.end}
		if exp, ok := idx[k]; ok && sameSegmentExpiry(exp, s.expiry, tol) {
			keep[k] = true
			continue
		}
		add = append(add, s)
	}
	for _, s := range have {
		if !keep[key{s.start, s.end}] {
			del = append(del, s)
		}
	}
	return del, add
}

// rangePrefixes splits an inclusive range into the fewest CIDR prefixes.
func rangePrefixes(start, end netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for start.IsValid() && !end.Less(start) {
		bits := start.BitLen()
		// Widen the prefix while it stays aligned on start and inside end.
		for bits > 0 {
			p := netip.PrefixFrom(start, bits-1)
			if p.Masked().Addr() != start || end.Less(lastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(start, bits)
		out = append(out, p)
		start = lastAddr(p).Next()
	}
	return out
}

// covered reports whether the sorted, disjoint segs hold every address of p
// with an expiry no earlier than exp (within tol).
func covered(segs []segment, p netip.Prefix, exp time.Time, tol time.Duration) bool {
	start, end := p.Masked().Addr(), lastAddr(p)
	i, _ := slices.BinarySearchFunc(segs, start, func(s segment, a netip.Addr) int {
		if s.end.Less(a) {
			return -1
		}
		if a.Less(s.start) {
			return 1
		}
		return 0
	})
	at := start
	for ; i < len(segs); i++ {
		s := segs[i]
		if at.Less(s.start) {
			return false
		}
		if laterExpiry(exp, s.expiry) && !sameSegmentExpiry(exp, s.expiry, tol) {
			return false
		}
		if !s.end.Less(end) {
			return true
		}
		at = s.end.Next()
	}
	return false
}
