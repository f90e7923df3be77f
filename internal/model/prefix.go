package model

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseValue parses a decision value: an address ("198.18.0.1") or a CIDR
// ("198.18.0.0/15"), surrounding space ignored, and returns it in Canonical
// form. A zoned address is refused: the zone names a link, which no ban,
// set element or map key can hold, so dropping it would ban an address the
// caller did not write.
func ParseValue(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		// netip.ParsePrefix already refuses zones.
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return Canonical(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zoned addresses are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Canonical returns the one form a prefix is stored, compared and enforced
// in: host bits masked, and an IPv4-mapped IPv6 prefix of /96 or longer
// turned into the IPv4 prefix it acts as (::ffff:198.18.0.0/112 is
// 198.18.0.0/16, ::ffff:0:0/96 is 0.0.0.0/0), because the kernel sees those
// packets as IPv4. A prefix shorter than /96 is not inside the mapped block
// but covers all of it and more, so it stays the IPv6 range it is
// (::ffff:0:0/80 is ::/80); turning it into 0.0.0.0/0 would ban every IPv4
// address for a range written in IPv6. The zero Prefix stays invalid.
func Canonical(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// ScopeOf returns the CrowdSec scope of a decision value: ScopeIP for a
// single address, ScopeRange for anything wider.
func ScopeOf(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return ScopeIP
	}
	return ScopeRange
}

// ValueString is how a decision value is written and stored: a single
// address alone, a range in CIDR notation, both in Canonical form.
func ValueString(p netip.Prefix) string {
	p = Canonical(p)
	if ScopeOf(p) == ScopeIP {
		return p.Addr().String()
	}
	return p.String()
}
