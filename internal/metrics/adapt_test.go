package metrics

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
)

type fakeNFTBackend struct {
	counters map[string]nft.Counter
	entries  []enforce.Entry
	err      error
}

func (f fakeNFTBackend) Counters(context.Context) (map[string]nft.Counter, error) {
	return f.counters, f.err
}
func (f fakeNFTBackend) List(context.Context) ([]enforce.Entry, error) { return f.entries, f.err }

type fakeXDPBackend struct {
	counters xdp.Counters
	entries  []enforce.Entry
}

func (f fakeXDPBackend) Counters() (xdp.Counters, error)               { return f.counters, nil }
func (f fakeXDPBackend) List(context.Context) ([]enforce.Entry, error) { return f.entries, nil }

func entries(ps ...string) []enforce.Entry {
	out := make([]enforce.Entry, len(ps))
	for i, p := range ps {
		out[i] = enforce.Entry{Prefix: netip.MustParsePrefix(p)}
	}
	return out
}

// The adapters take the real backends' counter types (checked here at
// compile time) and count entries per set.
func TestAdapters(t *testing.T) {
	ctx := context.Background()
	es := entries("198.18.0.1/32", "198.18.0.2/32", "198.18.4.0/24", "2001:db8::1/128", "2001:db8:1::/48", "2001:db8:2::/48")

	n := NFTablesOf[nft.Counter](fakeNFTBackend{counters: map[string]nft.Counter{"ban4": {Packets: 3, Bytes: 180}}, entries: es})
	dc, err := n.DropCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]DropCounter{"ban4": {Packets: 3, Bytes: 180}}, dc); d != "" {
		t.Errorf("nft counters (-want +got):\n%s", d)
	}
	el, err := n.Elements(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{"ban4": 2, "ban4_range": 1, "ban6": 1, "ban6_range": 2}, el); d != "" {
		t.Errorf("nft elements (-want +got):\n%s", d)
	}

	x := XDPOf[xdp.Counters](fakeXDPBackend{counters: xdp.Counters{DroppedPackets: 5, DroppedBytes: 300, PassedPackets: 9, ExpiredHits: 1}, entries: es[:1]})
	xc, err := x.XDPCounters()
	if err != nil {
		t.Fatal(err)
	}
	if want := (XDPCounters{DroppedPackets: 5, DroppedBytes: 300, PassedPackets: 9, ExpiredHits: 1}); xc != want {
		t.Errorf("xdp counters %+v, want %+v", xc, want)
	}
	xel, err := x.Elements(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{"moat_single4": 1, "moat_single6": 0, "moat_range4": 0, "moat_range6": 0}, xel); d != "" {
		t.Errorf("xdp elements (-want +got):\n%s", d)
	}

	boom := errors.New("netlink down")
	if _, err := NFTablesOf[nft.Counter](fakeNFTBackend{err: boom}).Elements(ctx); !errors.Is(err, boom) {
		t.Errorf("Elements error %v, want %v", err, boom)
	}
}

// The real components fit the interfaces as they are.
var (
	_ nftSource[nft.Counter]  = (*nft.Backend)(nil)
	_ xdpSource[xdp.Counters] = (*xdp.Backend)(nil)
	_ Engine                  = (*engine.Engine)(nil)
	_ Reconciler              = (*enforce.Reconciler)(nil)
)
