package postgres

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// The daemon and the API take this store as they take the SQLite one.
var (
	_ decision.Store   = (*Store)(nil)
	_ api.Store        = (*Store)(nil)
	_ api.MachineStore = (*Store)(nil)
)

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func decisions(n, from int, until time.Time) []model.Decision {
	ds := make([]model.Decision, n)
	for i := range ds {
		j := from + i
		a := netip.AddrFrom4([4]byte{198, 18 + byte(j>>16)&1, byte(j >> 8), byte(j)})
		ds[i] = model.Decision{Value: netip.PrefixFrom(a, 32), Type: "ban", Origin: model.OriginList, Scenario: "list", Until: until}
	}
	return ds
}

// TestReplicaWakes: a stream waiting on one replica wakes, by NOTIFY,
// within 50 ms of another replica's insert, and streams the decision.
func TestReplicaWakes(t *testing.T) {
	pg := testutil.StartPostgres(t)
	a, b := open(t, pg.DSN()), open(t, pg.DSN())
	ctx := context.Background()
	var worst time.Duration
	for i := range 20 {
		after, err := b.Seq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		woke := make(chan time.Time, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := b.Wait(wctx, after); err != nil {
				t.Errorf("Wait: %v", err)
			}
			woke <- time.Now()
		}()
		ds := decisions(1, i, time.Now().Add(time.Hour))
		if _, err := a.InsertAlert(ctx, model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: ds[0].Value.Addr().String()}, ds); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		lat := (<-woke).Sub(committed)
		worst = max(worst, lat)
		if lat > 50*time.Millisecond {
			t.Errorf("insert %d: replica 2 woke %v after replica 1's commit, over 50 ms", i, lat)
		}
		var got []int64
		if _, err := b.Stream(ctx, after, false, time.Now(), 0, func(c store.Change, rs []store.Record) error {
			for _, r := range rs {
				got = append(got, r.ID)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != ds[0].ID {
			t.Fatalf("replica 2 streamed %v after waking, want [%d]", got, ds[0].ID)
		}
	}
	t.Logf("worst NOTIFY wake latency over 20 inserts: %v", worst)
}

// TestConcurrentExpiry: two replicas sweeping the same expired decisions
// at once never deadlock and mark each row once; the stream reports each
// deletion once.
func TestConcurrentExpiry(t *testing.T) {
	pg := testutil.StartPostgres(t)
	a, b := open(t, pg.DSN()), open(t, pg.DSN())
	ctx := context.Background()
	const n = 5000
	if err := a.InsertDecisions(ctx, decisions(n, 0, time.Now().Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	base, err := a.Seq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	counts := make([]int, 8)
	errs := make([]error, 8)
	for i := range counts {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for {
				m, err := s.Expire(ctx, time.Now())
				counts[i] += m
				if err != nil || m == 0 {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for i := range counts {
		if errs[i] != nil {
			t.Errorf("sweeper %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != n {
		t.Errorf("the sweepers marked %d in all (%v), want %d: each row once", total, counts, n)
	}
	seen := map[int64]int{}
	if _, err := b.Stream(ctx, base, false, time.Now(), 0, func(c store.Change, rs []store.Record) error {
		for _, r := range rs {
			if c != store.Deleted {
				return fmt.Errorf("decision %d streamed as new", r.ID)
			}
			seen[r.ID]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d deletions streamed, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("decision %d streamed deleted %d times", id, k)
		}
	}
}

// TestReplicasUnderLoad: two replicas inserting, deleting, expiring and
// pruning at once all succeed (no deadlock, 40P01, reaches a caller), and
// the sequence stays commit-ordered across them: a bouncer following the
// deltas on one replica sees each decision that stays active exactly
// once, and none twice.
func TestReplicasUnderLoad(t *testing.T) {
	pg := testutil.StartPostgres(t)
	a, b := open(t, pg.DSN()), open(t, pg.DSN())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 64)
	const writers, rounds = 4, 100
	kept := make([][]int64, writers)
	var ww sync.WaitGroup
	for w := range writers {
		s := []*Store{a, b}[w%2]
		ww.Go(func() {
			for r := range rounds {
				j := w*rounds + r
				ds := decisions(3, 3*j, time.Now().Add(time.Millisecond))
				ds[1].Until = time.Time{} // stays
				if _, err := s.InsertAlert(ctx, model.Alert{Scenario: "s", Scope: model.ScopeIP, Value: "x"}, ds); err != nil {
					errc <- err
					return
				}
				kept[w] = append(kept[w], ds[1].ID)
				if _, err := s.DeleteDecisions(ctx, store.Filter{Value: model.ValueString(ds[0].Value)}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	sweep, stopSweep := context.WithCancel(ctx)
	var sw sync.WaitGroup
	for _, s := range []*Store{a, b} {
		sw.Go(func() {
			for sweep.Err() == nil {
				_, err := s.Expire(sweep, time.Now())
				if err == nil {
					_, err = s.Prune(sweep, time.Now())
				}
				if err == nil {
					_, err = s.CapAlerts(sweep, 50)
				}
				if err != nil && sweep.Err() == nil {
					errc <- err
					return
				}
			}
		})
	}
	seen := map[int64]int{}
	var last int64
	follow := func() {
		var err error
		last, err = b.Stream(ctx, last, false, time.Unix(0, 1), 0, func(c store.Change, rs []store.Record) error {
			if c == store.New {
				for _, r := range rs {
					seen[r.ID]++
				}
			}
			return nil
		})
		if err != nil {
			errc <- err
		}
	}
	writing := make(chan struct{})
	go func() { ww.Wait(); close(writing) }()
	for follows := 0; ; follows++ {
		follow()
		select {
		case <-writing:
			follow()
			stopSweep()
			sw.Wait()
			close(errc)
			for err := range errc {
				t.Errorf("under load: %v", err)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("decision %d streamed new %d times", id, n)
				}
			}
			for _, ids := range kept {
				for _, id := range ids {
					if seen[id] != 1 {
						t.Errorf("decision %d, never deleted, streamed %d times", id, seen[id])
					}
				}
			}
			t.Logf("%d deltas followed, %d decisions seen", follows, len(seen))
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// TestGroupedInserts: inserts made at once share statements, yet each
// alert gets its own decisions, and one caller's bad row (an ID already
// taken) fails that caller alone.
func TestGroupedInserts(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s := open(t, pg.DSN())
	ctx := context.Background()
	taken := decisions(1, 0, time.Now().Add(time.Hour))
	if err := s.InsertDecisions(ctx, taken); err != nil {
		t.Fatal(err)
	}
	const callers = 64
	type result struct {
		alert int64
		ds    []int64
		err   error
	}
	results := make([]result, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			ds := decisions(1+i%3, 10+4*i, time.Now().Add(time.Hour))
			if i == callers/2 {
				ds[0].ID = taken[0].ID
			}
			id, err := s.InsertAlert(ctx, model.Alert{Scenario: fmt.Sprint("s", i), Scope: model.ScopeIP, Value: ds[0].Value.Addr().String()}, ds)
			results[i] = result{alert: id, err: err}
			for _, d := range ds {
				results[i].ds = append(results[i].ds, d.ID)
			}
		})
	}
	wg.Wait()
	for i, r := range results {
		if i == callers/2 {
			if r.err == nil {
				t.Errorf("caller %d reused decision ID %d without error", i, taken[0].ID)
			}
			continue
		}
		if r.err != nil {
			t.Errorf("caller %d: %v", i, r.err)
			continue
		}
		a, err := s.GetAlert(ctx, r.alert)
		if err != nil {
			t.Fatal(err)
		}
		if a.Alert.Scenario != fmt.Sprint("s", i) || fmt.Sprint(a.Decisions) != fmt.Sprint(r.ds) {
			t.Errorf("caller %d: alert %d is %s with decisions %v, want s%d with %v", i, r.alert, a.Alert.Scenario, a.Decisions, i, r.ds)
		}
	}
}
