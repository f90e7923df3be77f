package enforce

import (
	"fmt"
	"net/netip"

	"github.com/moatsec/moat/internal/model"
)

// maxSplitBits bounds the parts Carve splits one range wider than the
// width limit into: 2^12, 4096.
const maxSplitBits = 12

// Carve returns the parts of p the guard lets through: p itself when Check
// passes it, else p with every protected address left out (loopback,
// link-local, multicast, the allowlist, this host's addresses), as the
// fewest prefixes that cover the rest. A range wider than the width limit
// is split into ranges at the limit first, when that takes at most 4096
// of them; wider, it is refused. Only an error (the host's addresses
// unknown, p invalid or too wide) lets nothing through.
//
// Country and AS decisions go through it: a database network is banned
// around the addresses it must not cover instead of not at all.
func (g *Guard) Carve(p netip.Prefix) ([]netip.Prefix, error) {
	if !p.IsValid() {
		return nil, &RefusedError{Prefix: p, Reason: "invalid prefix"}
	}
	p = p.Masked()
	parts := []netip.Prefix{p}
	if err := model.CheckWidth(p, g.cfg.MinBits4, g.cfg.MinBits6); err != nil {
		limit := err.(*model.WidthError).MinBits
		if limit-p.Bits() > maxSplitBits {
			return nil, &RefusedError{Prefix: p, Reason: fmt.Sprintf("range wider than the configured limit /%d, and too wide to split into /%d ranges", limit, limit)}
		}
		parts = split(p, limit)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refreshHost()
	if g.hostErr != nil {
		return nil, &RefusedError{Prefix: p, Reason: "host addresses unknown: " + g.hostErr.Error()}
	}
	var protected []netip.Prefix
	for _, a := range alwaysProtected {
		if a.p.Overlaps(p) {
			protected = append(protected, a.p)
		}
	}
	for _, a := range g.allow {
		if a.Overlaps(p) {
			protected = append(protected, model.Canonical(a))
		}
	}
	if g.extra != nil {
		protected = append(protected, g.extra(p)...)
	}
	for _, a := range g.host {
		if p.Contains(a) {
			protected = append(protected, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(protected) == 0 {
		return parts, nil
	}
	var out []netip.Prefix
	for _, q := range parts {
		out = subtract(out, q, protected)
	}
	return out, nil
}

// split cuts p into the prefixes of length bits it holds.
func split(p netip.Prefix, bits int) []netip.Prefix {
	if p.Bits() >= bits {
		return []netip.Prefix{p}
	}
	lo, hi := halves(p)
	return append(split(lo, bits), split(hi, bits)...)
}

// halves are the two prefixes one bit longer that make up p.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	b := p.Addr().As16()
	bit := p.Bits()
	if p.Addr().Is4() {
		bit += 96
	}
	b[bit/8] |= 0x80 >> (bit % 8)
	hi := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		hi = hi.Unmap()
	}
	return lo, netip.PrefixFrom(hi, p.Bits()+1)
}

// subtract appends to out the parts of p that no prefix of protected
// overlaps: p whole when none does, nothing when one covers it, else each
// half in turn. The depth is bounded by the address length.
func subtract(out []netip.Prefix, p netip.Prefix, protected []netip.Prefix) []netip.Prefix {
	overlap := false
	for _, q := range protected {
		if !q.Overlaps(p) {
			continue
		}
		if q.Bits() <= p.Bits() {
			return out
		}
		overlap = true
	}
	if !overlap {
		return append(out, p)
	}
	lo, hi := halves(p)
	return subtract(subtract(out, lo, protected), hi, protected)
}
