package enforce

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// startLoading runs a reconciler whose start loads the stored decisions
// with load.
func startLoading(t *testing.T, load Loader, backends ...Backend) *Reconciler {
	t.Helper()
	r := NewReconciler(ReconcilerConfig{Load: load}, backends...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func waitReady(t *testing.T, r *Reconciler) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the reconciler never became ready")
	}
}

// TestReconcilerAdoptsUnstoredEntries: a kernel entry no stored decision
// covers was enforced by a run killed before its store write. The start
// keeps it until its kernel expiry, a decision on the same prefix takes it
// over, and deleting that decision deletes it; an entry whose expiry passed
// (an XDP map keeps those) is removed.
func TestReconcilerAdoptsUnstoredEntries(t *testing.T) {
	mem := newMem()
	unstored, forever, stale := netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("198.18.0.3/32")
	expiry := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	mem.held[unstored] = expiry
	mem.held[forever] = time.Time{}
	mem.held[stale] = time.Now().Add(-time.Minute)
	r := startLoading(t, func(context.Context, func([]model.Decision) error) error { return nil }, mem)
	waitReady(t, r)
	ctx := context.Background()
	for pass := range 2 {
		drift, err := r.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := mem.get(unstored.String()); !ok || !got.Equal(expiry) {
			t.Fatalf("pass %d: unstored ban held %v until %v, want held until its kernel expiry %v", pass, ok, got, expiry)
		}
		if got, ok := mem.get(forever.String()); !ok || !got.IsZero() {
			t.Fatalf("pass %d: permanent unstored ban held %v until %v", pass, ok, got)
		}
		if _, ok := mem.get(stale.String()); ok {
			t.Fatalf("pass %d: an entry whose expiry passed was kept", pass)
		}
		if pass == 1 && drift.Total() != 0 {
			t.Fatalf("second pass found drift %+v", drift)
		}
	}
	if n := r.Adopted(); n != 2 {
		t.Fatalf("adopted %d entries, want 2", n)
	}

	// The alert raised again stores a decision: it takes over.
	d := ban(7, unstored.String(), 2*time.Hour)
	if err := r.Apply(ctx, []model.Decision{d}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := mem.get(unstored.String()); !got.Equal(d.Until) {
		t.Fatalf("after a stored decision took over: expiry %v, want %v", got, d.Until)
	}
	if err := r.Apply(ctx, nil, []model.Decision{d}); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.get(unstored.String()); ok {
		t.Fatal("deleting the decision that took over an adopted ban left the ban in the kernel")
	}
	if drift, err := r.Verify(ctx); err != nil || drift.Total() != 0 {
		t.Fatalf("verify after the delete: drift %+v, %v", drift, err)
	}
	if _, ok := mem.get(unstored.String()); ok {
		t.Fatal("a verify pass brought back a deleted ban")
	}
}

// TestReconcilerLoadsInBackground: while the stored decisions load, a new
// decision reaches the kernel at once, nothing the kernel holds is removed
// for being absent from the half-loaded desired set, and a decision deleted
// on purpose leaves the kernel even before the load reached it.
func TestReconcilerLoadsInBackground(t *testing.T) {
	mem := newMem()
	stored := []model.Decision{ban(1, "198.18.1.1/32", time.Hour), ban(2, "198.18.1.2/32", time.Hour), ban(3, "198.18.1.3/32", 2*time.Hour)}
	deleted := ban(4, "198.18.1.4/32", time.Hour)
	for _, d := range append(stored[:2:2], deleted) {
		mem.held[d.Value] = d.Until
	}
	unstored := netip.MustParsePrefix("198.18.1.9/32")
	mem.held[unstored] = time.Now().Add(time.Hour)

	release, loading := make(chan struct{}), make(chan struct{})
	r := startLoading(t, func(ctx context.Context, load func([]model.Decision) error) error {
		close(loading)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return load(stored)
	}, mem)
	<-loading
	ctx := context.Background()
	fresh := ban(10, "198.18.2.1/32", time.Hour)
	if err := r.Apply(ctx, []model.Decision{fresh}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.get("198.18.2.1/32"); !ok {
		t.Fatal("a new decision did not reach the kernel while the store loaded")
	}
	if err := r.Apply(ctx, nil, []model.Decision{deleted}); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.get("198.18.1.4/32"); ok {
		t.Fatal("a decision deleted during the load stayed in the kernel")
	}
	select {
	case <-r.Ready():
		t.Fatal("ready before the load finished")
	default:
	}
	for _, p := range []string{"198.18.1.1/32", "198.18.1.2/32", unstored.String()} {
		if _, ok := mem.get(p); !ok {
			t.Fatalf("%s was removed from the kernel before the load finished", p)
		}
	}

	close(release)
	waitReady(t, r)
	if n, err := r.LoadResult(); n != len(stored) || err != nil {
		t.Fatalf("load result %d, %v; want %d, nil", n, err, len(stored))
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(stored, fresh) {
		if got, ok := mem.get(d.Value.String()); !ok || !got.Equal(d.Until) {
			t.Errorf("%s: held %v until %v, want until %v", d.Value, ok, got, d.Until)
		}
	}
	if _, ok := mem.get(unstored.String()); !ok {
		t.Error("the unstored ban was deleted after the load")
	}
	if _, ok := mem.get("198.18.1.4/32"); ok {
		t.Error("the deleted decision came back")
	}
}

// TestReconcilerDeletesAdopted: a delete by value reaches adopted entries,
// which no stored decision selects, and only those the filter names.
func TestReconcilerDeletesAdopted(t *testing.T) {
	adopted := []string{"198.18.3.1/32", "198.18.3.2/32", "198.18.4.0/24", "2001:db8::/64"}
	stored := ban(5, "198.18.3.3/32", time.Hour)
	cases := []struct {
		name string
		f    AdoptedFilter
		want []string
	}{
		{"ip", AdoptedFilter{IP: netip.MustParseAddr("198.18.3.1")}, []string{"198.18.3.1/32"}},
		{"ip in an adopted range", AdoptedFilter{IP: netip.MustParseAddr("198.18.4.7")}, []string{"198.18.4.0/24"}},
		{"mapped ip", AdoptedFilter{IP: netip.MustParseAddr("::ffff:198.18.3.2")}, []string{"198.18.3.2/32"}},
		{"ipv6 in a range", AdoptedFilter{IP: netip.MustParseAddr("2001:db8::9")}, []string{"2001:db8::/64"}},
		{"exact value", AdoptedFilter{Exact: netip.MustParsePrefix("198.18.3.2/32")}, []string{"198.18.3.2/32"}},
		{"exact range", AdoptedFilter{Exact: netip.MustParsePrefix("198.18.4.0/24")}, []string{"198.18.4.0/24"}},
		{"range inside", AdoptedFilter{Range: netip.MustParsePrefix("198.18.4.128/25")}, []string{"198.18.4.0/24"}},
		{"range wider than any", AdoptedFilter{Range: netip.MustParsePrefix("198.18.0.0/16")}, nil},
		{"stored, not adopted", AdoptedFilter{IP: netip.MustParseAddr("198.18.3.3")}, nil},
		{"scope range, single ip", AdoptedFilter{IP: netip.MustParseAddr("198.18.3.1"), Scope: "range"}, nil},
		{"scope ip", AdoptedFilter{IP: netip.MustParseAddr("198.18.3.1"), Scope: "ip"}, []string{"198.18.3.1/32"}},
		{"ip and another exact value", AdoptedFilter{IP: netip.MustParseAddr("198.18.3.1"), Exact: netip.MustParsePrefix("198.18.3.2/32")}, nil},
		{"nothing named", AdoptedFilter{}, nil},
		{"all", AdoptedFilter{All: true}, adopted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := newMem()
			expiry := time.Now().Add(time.Hour).Truncate(time.Millisecond)
			for _, p := range adopted {
				mem.held[netip.MustParsePrefix(p)] = expiry
			}
			mem.held[stored.Value] = stored.Until
			r := startLoading(t, func(_ context.Context, load func([]model.Decision) error) error {
				return load([]model.Decision{stored})
			}, mem)
			waitReady(t, r)
			ctx := context.Background()
			if _, err := r.Verify(ctx); err != nil {
				t.Fatal(err)
			}
			if n := r.Adopted(); n != uint64(len(adopted)) {
				t.Fatalf("adopted %d entries, want %d", n, len(adopted))
			}
			got, err := r.DeleteAdopted(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotP []string
			for _, e := range got {
				gotP = append(gotP, e.Prefix.String())
				if !e.Expiry.Equal(expiry) {
					t.Errorf("%s reported with expiry %v, want its kernel expiry %v", e.Prefix, e.Expiry, expiry)
				}
			}
			slices.Sort(gotP)
			if !slices.Equal(gotP, c.want) {
				t.Fatalf("deleted %v, want %v", gotP, c.want)
			}
			// A verify pass must not bring them back.
			if drift, err := r.Verify(ctx); err != nil || drift.Total() != 0 {
				t.Fatalf("verify after the delete: drift %+v, %v", drift, err)
			}
			for _, p := range append(slices.Clone(adopted), stored.Value.String()) {
				_, held := mem.get(p)
				if want := !slices.Contains(c.want, p); held != want {
					t.Errorf("%s held %v, want %v", p, held, want)
				}
			}
			if got, want := r.Stats().Entries, int64(len(adopted)+1-len(c.want)); got != want {
				t.Errorf("reconciler counts %d entries, want %d", got, want)
			}
		})
	}
}
