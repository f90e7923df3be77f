package decision

import (
	"context"
	"database/sql"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// bulkDecisions writes n active bans on 100.64.0.0/10 straight into the
// store's table in one statement: InsertDecisions would take seconds.
func bulkDecisions(t testing.TB, path string, n int) {
	t.Helper()
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	until := time.Now().Add(4 * time.Hour).UnixNano()
	_, err = db.Exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
		INSERT INTO decisions (id, value, scope, type, origin, scenario, reason, simulated, created_at, until, seq)
		SELECT i, '100.' || (64 + (i >> 16)) || '.' || ((i >> 8) & 255) || '.' || (i & 255), 'Ip', 'ban', 'lists', 'seed', '', 0, ?, ?, 1 FROM c`,
		n, time.Now().UnixNano(), until)
	if err != nil {
		t.Fatal(err)
	}
}

func openNFT(t *testing.T, ns *testutil.NetNS) *nft.Backend {
	t.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b, err := nft.Open(context.Background(), nft.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// startDaemon is the daemon's start without detection: store, reconciler
// loading the store in the background, service and pipeline. applied
// receives each batch the kernel took.
func startDaemon(t *testing.T, ctx context.Context, path string, b enforce.Backend, applied func([]model.Decision)) (*Service, *enforce.Reconciler, chan<- Batch) {
	t.Helper()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var cfg enforce.ReconcilerConfig
	cfg.Load = func(ctx context.Context, load func([]model.Decision) error) error {
		return st.ActivePages(ctx, time.Now(), 0, load)
	}
	if applied != nil {
		cfg.Applied = func(ds []model.Decision, _ time.Time) { applied(ds) }
	}
	r := enforce.NewReconciler(cfg, b)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	svc, err := New(st, mustProfiles(t), r)
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan Batch)
	pdone := make(chan error, 1)
	go func() { pdone <- NewDispatcher(svc, DispatcherConfig{}).Run(rctx, in) }()
	t.Cleanup(func() {
		stop()
		<-pdone
		<-done
	})
	return svc, r, in
}

// TestStartWithMillionBans: with a million stored decisions, a restarted
// daemon bans a new attacker within a second of its start, while the
// store loads; the old bans never leave the kernel.
func TestStartWithMillionBans(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: writes a million bans to a store and a kernel")
	}
	const n = 1_000_000
	ns := testutil.NewNetNS(t)
	path := filepath.Join(t.TempDir(), store.FileName)
	bulkDecisions(t, path, n)

	// The previous run: the kernel holds the million bans.
	ctx := context.Background()
	{
		pctx, stop := context.WithCancel(ctx)
		_, r, _ := startDaemon(t, pctx, path, openNFT(t, ns), nil)
		select {
		case <-r.Ready():
		case <-time.After(5 * time.Minute):
			t.Fatal("the first load did not finish")
		}
		if got, _ := r.LoadResult(); got != n {
			t.Fatalf("first run loaded %d decisions, want %d", got, n)
		}
		stop()
	}

	// The restart, timed from the store's open.
	reached := make(chan time.Time, 1)
	target := netip.MustParsePrefix("198.18.77.7/32")
	start := time.Now()
	svc, r, in := startDaemon(t, ctx, path, openNFT(t, ns), func(ds []model.Decision) {
		for _, d := range ds {
			if d.Value == target {
				reached <- time.Now()
			}
		}
	})
	in <- Batch{Alerts: []model.Alert{alert(target.Addr().String())}}
	var at time.Time
	select {
	case at = <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the new ban never reached the kernel")
	}
	took := at.Sub(start)
	loaded := false
	select {
	case <-r.Ready():
		loaded = true
	default:
	}
	t.Logf("new ban in the kernel %v after start, with %d stored decisions (load finished by then: %v)", took, n, loaded)
	if took > time.Second {
		t.Errorf("the new ban took %v after start, want within 1s", took)
	}
	select {
	case <-r.Ready():
	case <-time.After(5 * time.Minute):
		t.Fatal("the load did not finish")
	}
	t.Logf("store loaded %v after start", time.Since(start))
	// The new decision may be stored before the load reads its page.
	if got, err := r.LoadResult(); got < n || err != nil {
		t.Fatalf("loaded %d, %v; want at least %d", got, err, n)
	}
	waitUntil(t, "the new ban stored", func() bool {
		recs, _ := svc.List(ctx, store.Filter{Value: target.Addr().String()})
		return len(recs) == 1
	})
	// Dumping a million-element set takes minutes; every batch reached
	// the kernel without error and nothing was deleted.
	if st := r.Stats(); st.Entries != n+1 || st.ApplyErrors != 0 {
		t.Fatalf("reconciler stats %+v, want %d entries and no errors", st, n+1)
	}
}
