package decision

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// nopBackend takes every diff: the footprint figures are the reconciler's
// and the store's, not a kernel's.
type nopBackend struct{}

func (nopBackend) Name() string                                  { return "nop" }
func (nopBackend) Apply(context.Context, enforce.Diff) error     { return nil }
func (nopBackend) List(context.Context) ([]enforce.Entry, error) { return nil, nil }

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// loadedHeap opens a store of n bulk-written bans, loads them into a
// reconciler and the store's indexes, and returns the heap they hold.
func loadedHeap(tb testing.TB, n int) uint64 {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), store.FileName)
	bulkDecisions(tb, path, n)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	before := liveHeap()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	cfg := enforce.ReconcilerConfig{Load: func(ctx context.Context, load func([]model.Decision) error) error {
		return st.ActivePages(ctx, time.Now(), 0, load)
	}}
	r := enforce.NewReconciler(cfg, nopBackend{})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { stop(); <-done }()
	<-r.Ready()
	if got, err := r.LoadResult(); got != n || err != nil {
		tb.Fatalf("loaded %d, %v; want %d", got, err, n)
	}
	if err := st.WaitIndexed(ctx); err != nil {
		tb.Fatal(err)
	}
	after := liveHeap()
	runtime.KeepAlive(r)
	runtime.KeepAlive(st)
	return after - min(before, after)
}

// maxHeap1M bounds the heap a million stored and enforced bans hold (the
// reconciler's desired set and expiry heap, the store's count index):
// 69.5 MiB measured, 112 MiB while the desired set and the count index
// were Go maps and expiry items held decision IDs.
const maxHeap1M = 80 << 20

// TestMillionBansHeap holds the heap of a million loaded bans to its bound.
func TestMillionBansHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: loads a million bans")
	}
	heap := loadedHeap(t, 1_000_000)
	t.Logf("a million bans hold %.1f MiB of heap", float64(heap)/(1<<20))
	if heap > maxHeap1M {
		t.Errorf("a million bans hold %d MiB of heap, want at most %d", heap>>20, maxHeap1M>>20)
	}
}

// BenchmarkFootprint1M reports the heap a million loaded bans hold.
func BenchmarkFootprint1M(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(float64(loadedHeap(b, 1_000_000))/(1<<20), "heap-MiB")
	}
}

// TestActiveByOriginAllocates: counting active decisions for a metrics
// scrape must not read them into memory (a million took a gigabyte).
func TestActiveByOriginAllocates(t *testing.T) {
	const n = 20_000
	path := filepath.Join(t.TempDir(), store.FileName)
	bulkDecisions(t, path, n)
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := New(st, mustProfiles(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The indexes' load allocates in the background.
	if err := st.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	got, err := svc.ActiveByOrigin(ctx)
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	// bulkDecisions writes origin "lists".
	if got["lists"] != n || len(got) != 1 {
		t.Fatalf("active by origin %v, want %d of origin lists", got, n)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 256<<10 {
		t.Errorf("counting %d decisions allocated %d KiB, want at most 256", n, alloc>>10)
	}
}
