package nft

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"

	"github.com/moatsec/moat/enforce"
)

// readSegments reads an interval set and pairs its start and end elements
// back into segments, sorted.
func (b *Backend) readSegments(s *nftables.Set) ([]segment, error) {
	els, err := b.readElements(s)
	if err != nil {
		return nil, err
	}
	type point struct {
		addr    netip.Addr
		end     bool
		expiry  time.Time
		expired bool
	}
	pts := make([]point, 0, len(els))
	for _, e := range els {
		// An expired start waits for the set's garbage collection: it no
		// longer matches packets and does not block new elements.
		pts = append(pts, point{addr: e.addr, end: e.end, expiry: e.expiry, expired: e.expired && !e.end})
	}
	// An end and the next start may share an address; the end goes first.
	slices.SortFunc(pts, func(x, y point) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		default:
			return 1
		}
	})
	var segs []segment
	var open *point
	emit := func(end netip.Addr) {
		if !open.expired {
			segs = append(segs, segment{start: open.addr, end: end, expiry: open.expiry})
		}
		open = nil
	}
	for i := range pts {
		p := &pts[i]
		if p.end {
			if open != nil {
				emit(p.addr.Prev())
			}
			continue
		}
		if open != nil {
			emit(p.addr.Prev())
		}
		open = p
	}
	if open != nil {
		top := netip.IPv4Unspecified()
		if open.addr.Is6() {
			top = netip.IPv6Unspecified()
		}
		emit(lastAddr(netip.PrefixFrom(top, 0)))
	}
	return segs, nil
}

// List implements enforce.Backend: it reads every element over netlink.
// Ranges are reported as the prefixes Apply was given when the kernel holds
// them in full; segments nothing explains (added by hand, or left from
// before) are reported as the CIDR prefixes that make them up.
func (b *Backend) List(ctx context.Context) ([]enforce.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []enforce.Entry
	known := newAddrSet(len(b.known.v4), len(b.known.v6))
	for _, s := range b.single {
		els, err := b.readElements(s)
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			known.add(e.addr)
			out = append(out, enforce.Entry{Prefix: netip.PrefixFrom(e.addr, e.addr.BitLen()), Expiry: e.expiry})
		}
	}
	b.known, b.knownComplete = known, true
	for f, s := range b.ranged {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := b.now()
		have, err := b.readSegments(s)
		if err != nil {
			return nil, err
		}
		b.pruneRanges(family(f), now)
		reported := map[netip.Prefix]bool{}
		for p, exp := range b.ranges[f] {
			if covered(have, p, exp, expiryTolerance) {
				out = append(out, enforce.Entry{Prefix: p, Expiry: exp})
				reported[p] = true
			}
		}
		want := normalize(b.ranges[f], now)
		del, _ := diffSegments(have, want, expiryTolerance)
		for _, sg := range del {
			for _, p := range rangePrefixes(sg.start, sg.end) {
				if !reported[p] {
					out = append(out, enforce.Entry{Prefix: p, Expiry: sg.expiry})
					reported[p] = true
				}
			}
		}
	}
	return out, nil
}
