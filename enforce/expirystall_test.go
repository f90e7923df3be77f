package enforce_test

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// TestExpiryStall loads 100k decisions that all expire at the same instant
// into the reconciler over real nftables (in a namespace of its own), and
// times new bans, request to kernel commit, while they expire: a mass
// expiry is one loop on the reconciler's goroutine, the one every new ban
// waits for, so a slow loop would stall the hot path exactly when a
// blocklist's bans end together. The bound is generous (the machine may be
// shared): it catches a stall, not a slowdown. make bench reads the
// "expiry stall:" line.
func TestExpiryStall(t *testing.T) {
	testutil.RequireRoot(t)
	const (
		expiring = 100_000
		// Probing runs from before the instant to well after it, so a
		// stall shows however late the expiry timer fires.
		before, after = 300 * time.Millisecond, 1500 * time.Millisecond
		every         = 2 * time.Millisecond
		boundP99      = 100 * time.Millisecond
	)
	ns := testutil.NewNetNS(t)
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	cfg := nft.Config{NetNS: int(f.Fd())}
	be, err := nft.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		be.Close()
		if err := nft.Cleanup(ctx, cfg); err != nil {
			t.Error(err)
		}
	}()
	rec, stop := startReconciler(t, []enforce.Backend{be})
	defer stop()

	// Far enough ahead for the load to finish on a loaded machine, checked
	// below rather than assumed.
	at := time.Now().Add(6 * time.Second).Truncate(time.Millisecond)
	ds := make([]model.Decision, expiring)
	for i := range ds {
		// 100.64.0.0/10 (see kernelbench_test.go's address plan).
		a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		ds[i] = model.Decision{ID: int64(i + 1), Value: netip.PrefixFrom(a, 32), Type: "ban",
			Origin: model.OriginCLI, Scenario: "test/expiry-stall", Until: at}
	}
	loadStart := time.Now()
	if err := rec.Apply(ctx, ds, nil); err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(loadStart)
	if time.Until(at) < before {
		t.Fatalf("loading %d decisions took %s: too late to probe before they expire", expiring, loaded)
	}
	time.Sleep(time.Until(at.Add(-before)))

	// New bans as alerts bring them, one every 2 ms whether or not the
	// previous one is in yet (waiting for it would let one stalled ban
	// hide the others a stall delays), each timed from the request to the
	// nft commit (Apply returns then).
	type probe struct {
		start time.Time
		lat   time.Duration
		err   error
	}
	var probes []*probe
	var wg sync.WaitGroup
	var gone time.Time
	next := 0
	for end := at.Add(after); time.Now().Before(end); next++ {
		a := netip.AddrFrom4([4]byte{100, 96 + byte(next>>16), byte(next >> 8), byte(next)})
		d := model.Decision{ID: int64(expiring + 1 + next), Value: netip.PrefixFrom(a, 32), Type: "ban",
			Origin: model.OriginCLI, Scenario: "test/expiry-stall", Until: time.Now().Add(time.Hour)}
		p := &probe{start: time.Now()}
		probes = append(probes, p)
		wg.Go(func() {
			p.err = rec.Apply(ctx, []model.Decision{d}, nil)
			p.lat = time.Since(p.start)
		})
		// The reconciler publishes its entry count once an expiry pass
		// is over: the first look that finds the 100k gone dates it.
		if gone.IsZero() && rec.Stats().Entries <= int64(next+1) {
			gone = time.Now()
		}
		time.Sleep(every)
	}
	wg.Wait()
	if gone.IsZero() {
		t.Fatalf("the %d decisions had not expired %s after their instant (entries %d)", expiring, after, rec.Stats().Entries)
	}
	lat := make([]time.Duration, len(probes))
	for i, p := range probes {
		if p.err != nil {
			t.Fatal(p.err)
		}
		lat[i] = p.lat
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	p50, p99, mx := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	t.Logf("expiry stall: %d decisions loaded in %.1f ms expired in %.1f ms; %d new bans around it: p50 %.3f ms, p99 %.3f ms, max %.3f ms",
		expiring, ms(loaded), ms(gone.Sub(at)), len(lat), ms(p50), ms(p99), ms(mx))
	if p99 > boundP99 {
		t.Errorf("new bans while %d decisions expired: p99 %s, bound %s: the expiry stalls the hot path", expiring, p99, boundP99)
	}
}
