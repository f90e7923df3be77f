package metrics

import (
	"context"

	"github.com/moatsec/moat/enforce"
)

// Adapters for the kernel backends, so cmd/moat can pass them as they are:
//
//	metrics.NFTablesOf[nft.Counter](nftBackend)
//	metrics.XDPOf[xdp.Counters](xdpBackend)
//
// They take the backends' own counter types by shape rather than importing
// the backend packages, which keeps this package free of netlink and BPF.

// nftSource is what the nftables backend offers.
type nftSource[C ~struct{ Packets, Bytes uint64 }] interface {
	Counters(ctx context.Context) (map[string]C, error)
	List(ctx context.Context) ([]enforce.Entry, error)
}

// NFTablesOf adapts the nftables backend. Element counts come from List,
// which dumps the sets: a scrape costs one netlink dump per set.
func NFTablesOf[C ~struct{ Packets, Bytes uint64 }](b nftSource[C]) NFTables {
	return nftAdapter[C]{b}
}

type nftAdapter[C ~struct{ Packets, Bytes uint64 }] struct{ b nftSource[C] }

func (a nftAdapter[C]) DropCounters(ctx context.Context) (map[string]DropCounter, error) {
	cs, err := a.b.Counters(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]DropCounter, len(cs))
	for k, c := range cs {
		out[k] = DropCounter(c)
	}
	return out, nil
}

func (a nftAdapter[C]) Elements(ctx context.Context) (map[string]int, error) {
	es, err := a.b.List(ctx)
	if err != nil {
		return nil, err
	}
	// Set names as enforce/nft creates them (design.md).
	return countEntries(es, "ban4", "ban6", "ban4_range", "ban6_range"), nil
}

// xdpSource is what the XDP backend offers.
type xdpSource[C ~struct{ DroppedPackets, DroppedBytes, PassedPackets, ExpiredHits uint64 }] interface {
	Counters() (C, error)
	List(ctx context.Context) ([]enforce.Entry, error)
}

// XDPOf adapts the XDP backend; its counters are summed over CPUs by the
// backend at each call.
func XDPOf[C ~struct{ DroppedPackets, DroppedBytes, PassedPackets, ExpiredHits uint64 }](b xdpSource[C]) XDP {
	return xdpAdapter[C]{b}
}

type xdpAdapter[C ~struct{ DroppedPackets, DroppedBytes, PassedPackets, ExpiredHits uint64 }] struct {
	b xdpSource[C]
}

func (a xdpAdapter[C]) XDPCounters() (XDPCounters, error) {
	c, err := a.b.Counters()
	if err != nil {
		return XDPCounters{}, err
	}
	return XDPCounters(c), nil
}

func (a xdpAdapter[C]) Elements(ctx context.Context) (map[string]int, error) {
	es, err := a.b.List(ctx)
	if err != nil {
		return nil, err
	}
	// Map names as bpf/ pins them.
	return countEntries(es, "moat_single4", "moat_single6", "moat_range4", "moat_range6"), nil
}

// countEntries sorts entries into single addresses and ranges per family,
// always reporting all four so an empty set shows as 0, not as missing.
func countEntries(es []enforce.Entry, single4, single6, range4, range6 string) map[string]int {
	out := map[string]int{single4: 0, single6: 0, range4: 0, range6: 0}
	for _, e := range es {
		p := e.Prefix
		single := p.Bits() == p.Addr().BitLen()
		switch {
		case p.Addr().Is4() && single:
			out[single4]++
		case p.Addr().Is4():
			out[range4]++
		case single:
			out[single6]++
		default:
			out[range6]++
		}
	}
	return out
}
