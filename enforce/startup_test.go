package enforce

import (
	"context"
	"net/netip"
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
