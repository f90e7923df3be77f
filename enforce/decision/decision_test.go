package decision

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

// fakeEnforcer keeps reference counts by ID, as the reconciler does.
type fakeEnforcer struct {
	mu    sync.Mutex
	held  map[int64]model.Decision
	calls int
	err   error
}

func newFake() *fakeEnforcer { return &fakeEnforcer{held: map[int64]model.Decision{}} }

func (f *fakeEnforcer) Apply(_ context.Context, add, remove []model.Decision) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, d := range add {
		f.held[d.ID] = d
	}
	for _, d := range remove {
		delete(f.held, d.ID)
	}
	return f.err
}

// banned reports whether some held decision covers addr.
func (f *fakeEnforcer) banned(addr string) bool {
	a := netip.MustParseAddr(addr)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.held {
		if d.Value.Contains(a) {
			return true
		}
	}
	return false
}

func newService(t testing.TB, enf Enforcer, allow ...netip.Prefix) *Service {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prof, err := profile.Parse("packaging/profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(st, prof, enf, allow...)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func alert(ip string) model.Alert {
	a := netip.MustParseAddr(ip)
	return model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: ip, Source: netip.PrefixFrom(a, a.BitLen()), Remediation: true, EventsCount: 6, Start: time.Now(), Stop: time.Now()}
}

func TestEscalationThroughStore(t *testing.T) {
	enf := newFake()
	svc := newService(t, enf)
	ctx := context.Background()
	var durations []time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		ds, err := svc.HandleAlert(ctx, alert("198.18.1.1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].ID == 0 {
			t.Fatalf("alert %d: decisions %+v", i, ds)
		}
		durations = append(durations, ds[0].Until.Sub(start).Round(time.Minute))
		// The ban ends (an admin lifts it): the next attack is a repeat
		// offence, not the same one.
		if _, err := svc.Delete(ctx, store.Filter{Value: "198.18.1.1"}); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{4 * time.Hour, 8 * time.Hour, 16 * time.Hour}
	for i := range want {
		if durations[i] != want[i] {
			t.Errorf("alert %d: %s, want %s", i, durations[i], want[i])
		}
	}
	alerts, err := sqlStore(svc).ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(alerts) != 3 {
		t.Fatalf("alerts %v, %v", alerts, err)
	}
	a, err := sqlStore(svc).GetAlert(ctx, alerts[0].ID)
	if err != nil || len(a.Decisions) != 1 || a.Alert.Scenario != "crowdsecurity/ssh-bf" {
		t.Fatalf("inspect: %+v, %v", a, err)
	}
}

func TestAllowlistAndSimulation(t *testing.T) {
	enf := newFake()
	svc := newService(t, enf, netip.MustParsePrefix("198.18.9.0/24"))
	ctx := context.Background()
	ds, err := svc.HandleAlert(ctx, alert("198.18.9.5"))
	if err != nil || len(ds) != 0 {
		t.Fatalf("allowlisted by config: %v, %v", ds, err)
	}
	// A CLI add on an allowlisted address is refused.
	err = svc.Add(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.9.6/32"), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI}})
	if !errors.Is(err, ErrAllowlisted) {
		t.Fatalf("add allowlisted: %v", err)
	}
	// A range covering an allowlisted address is refused too.
	err = svc.Add(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.0.0/16"), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI}})
	if !errors.Is(err, ErrAllowlisted) {
		t.Fatalf("add overlapping range: %v", err)
	}

	// Simulated: stored, not enforced.
	a := alert("198.18.2.2")
	a.Simulated = true
	ds, err = svc.HandleAlert(ctx, a)
	if err != nil || len(ds) != 1 || !ds[0].Simulated {
		t.Fatalf("simulated: %v, %v", ds, err)
	}
	if enf.banned("198.18.2.2") {
		t.Error("simulated decision reached the enforcer")
	}
	active, _ := svc.ActiveDecisions(ctx)
	if len(active) != 0 {
		t.Errorf("simulated decision in the seed: %v", active)
	}
	recs, _ := svc.List(ctx, store.Filter{IP: netip.MustParseAddr("198.18.2.2")})
	if len(recs) != 1 {
		t.Errorf("simulated decision not stored: %v", recs)
	}

	// Adding an allowlist entry lifts the bans it overlaps, store and kernel.
	if _, err := svc.HandleAlert(ctx, alert("198.18.3.3")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Add(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.3.0/28"), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI}}); err != nil {
		t.Fatal(err)
	}
	if !enf.banned("198.18.3.3") {
		t.Fatal("not banned")
	}
	lifted, err := svc.AddAllow(ctx, netip.MustParsePrefix("198.18.3.3/32"), "our monitoring", false)
	if err != nil || len(lifted) != 2 {
		t.Fatalf("lifted %v, %v", lifted, err)
	}
	if enf.banned("198.18.3.3") {
		t.Error("still banned in the kernel after allowlisting")
	}
	if recs, _ := svc.List(ctx, store.Filter{IP: netip.MustParseAddr("198.18.3.3")}); len(recs) != 0 {
		t.Errorf("still active in the store: %v", recs)
	}
	if ds, _ := svc.HandleAlert(ctx, alert("198.18.3.3")); len(ds) != 0 {
		t.Errorf("allowlisted source got %v", ds)
	}
	if got := svc.ListAllow(); len(got) != 2 || !got[0].Config || got[1].Reason != "our monitoring" {
		t.Errorf("list allow: %+v", got)
	}
	if err := svc.DeleteAllow(ctx, netip.MustParsePrefix("198.18.9.0/24")); !errors.Is(err, ErrConfigEntry) {
		t.Errorf("delete config entry: %v", err)
	}
	if err := svc.DeleteAllow(ctx, netip.MustParsePrefix("198.18.3.3/32")); err != nil {
		t.Fatal(err)
	}
	if ds, _ := svc.HandleAlert(ctx, alert("198.18.3.3")); len(ds) != 1 {
		t.Errorf("after allowlist delete: %v", ds)
	}
	if err := svc.DeleteAllow(ctx, netip.MustParsePrefix("198.18.3.3/32")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
}

func TestAddDeleteOverlapping(t *testing.T) {
	enf := newFake()
	svc := newService(t, enf)
	ctx := context.Background()
	ds := []model.Decision{
		{Value: netip.MustParsePrefix("198.18.5.5/32"), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI, Reason: "manual"},
		{Value: netip.MustParsePrefix("198.18.5.0/24"), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI, Type: "ban"},
	}
	if err := svc.Add(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if ds[0].ID == 0 || ds[1].ID == 0 || ds[0].ID == ds[1].ID {
		t.Fatalf("ids %d %d", ds[0].ID, ds[1].ID)
	}
	if _, err := svc.Delete(ctx, store.Filter{}); !errors.Is(err, ErrEmptyFilter) {
		t.Fatalf("empty filter: %v", err)
	}
	del, err := svc.Delete(ctx, store.Filter{Value: "198.18.5.5"})
	if err != nil || len(del) != 1 || del[0].ID != ds[0].ID {
		t.Fatalf("delete: %v, %v", del, err)
	}
	// The range still covers the address.
	if !enf.banned("198.18.5.5") {
		t.Error("range ban lost with the single one")
	}
	del, err = svc.DeleteAll(ctx)
	if err != nil || len(del) != 1 || enf.banned("198.18.5.5") {
		t.Fatalf("delete all: %v, %v", del, err)
	}
	// Invalid input is refused before anything is stored.
	bad := [][]model.Decision{
		{{}},
		{{Value: netip.MustParsePrefix("198.18.0.1/32"), Until: time.Now().Add(-time.Minute)}},
		{{Value: netip.MustParsePrefix("198.18.0.1/32"), Type: strings.Repeat("x", 100)}},
	}
	for _, b := range bad {
		if err := svc.Add(ctx, b); !errors.Is(err, ErrInvalid) {
			t.Errorf("add %+v: %v", b, err)
		}
	}
	if n, _ := sqlStore(svc).Counts(ctx); n.Decisions != 2 {
		t.Errorf("store has %d decisions, want 2", n.Decisions)
	}
}

func TestExpireFeedsStream(t *testing.T) {
	svc := newService(t, newFake())
	ctx := context.Background()
	ds := []model.Decision{{Value: netip.MustParsePrefix("198.18.6.6/32"), Until: time.Now().Add(150 * time.Millisecond), Origin: model.OriginCLI}}
	if err := svc.Add(ctx, ds); err != nil {
		t.Fatal(err)
	}
	seq, err := sqlStore(svc).Seq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n, err := svc.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	var deleted []int64
	_, err = sqlStore(svc).Stream(ctx, seq, false, time.Now(), 0, func(c store.Change, rs []store.Record) error {
		for _, r := range rs {
			if c == store.Deleted {
				deleted = append(deleted, r.ID)
			}
		}
		return nil
	})
	if err != nil || len(deleted) != 1 || deleted[0] != ds[0].ID {
		t.Fatalf("stream deleted %v, %v", deleted, err)
	}
	// The expired decision still counts for escalation.
	if n, _ := sqlStore(svc).CountDecisions(ctx, "198.18.6.6", time.Time{}); n != 1 {
		t.Errorf("count %d", n)
	}
	// Prune with a cutoff after its end removes it.
	st, err := sqlStore(svc).Prune(ctx, time.Now().Add(time.Second))
	if err != nil || st.Decisions != 1 {
		t.Fatalf("prune: %+v, %v", st, err)
	}
}

// TestCrashChild runs only as the child of TestCrashSafety: it adds a
// decision, reports its ID and waits to be killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("MOAT_CRASH_STORE")
	if path == "" {
		t.Skip("child of TestCrashSafety only")
	}
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(st, &profile.Set{}, newFake())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		ds := []model.Decision{{Value: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32), Until: time.Now().Add(time.Hour), Origin: model.OriginCLI}}
		if err := svc.Add(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("added %d\n", ds[0].ID)
	}
}

// TestCrashSafety kills a process with SIGKILL while it adds decisions
// in a loop: every decision whose Add returned (and was reported) must be
// in the store afterwards.
func TestCrashSafety(t *testing.T) {
	path := filepath.Join(t.TempDir(), store.FileName)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), "MOAT_CRASH_STORE="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []int64
	for sc.Scan() && len(acked) < 200 {
		if id, ok := strings.CutPrefix(sc.Text(), "added "); ok {
			n, _ := strconv.ParseInt(id, 10, 64)
			acked = append(acked, n)
		}
	}
	// Kill it mid-stream, right after an acknowledged Add.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d decisions", len(acked))
	}
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListDecisions(context.Background(), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for _, r := range recs {
		have[r.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged decision %d lost in the crash", id)
		}
	}
	t.Logf("%d acknowledged decisions, %d in the store after SIGKILL", len(acked), len(recs))
	// New IDs do not collide with the survivors.
	if next := st.ReserveIDs(1); have[next] {
		t.Errorf("reused ID %d", next)
	}
}

func BenchmarkServiceAdd(b *testing.B) {
	svc := newService(b, newFake())
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ds := []model.Decision{{Value: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32), Until: until, Origin: model.OriginAPI}}
		if err := svc.Add(ctx, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkHandleAlert(b *testing.B) {
	svc := newService(b, newFake())
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := svc.HandleAlert(ctx, alert(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// stamper records when each Apply call arrives.
type stamper struct{ at time.Time }

func (s *stamper) Apply(context.Context, []model.Decision, []model.Decision) error {
	s.at = time.Now()
	return nil
}

// BenchmarkAlertToEnforcer measures the service's share of the
// detection-to-kernel path: from HandleAlert's call to the enforcer's
// Apply (profiles, escalation count, allowlist; the SQLite commit runs in
// parallel and is not on this path).
func BenchmarkAlertToEnforcer(b *testing.B) {
	enf := &stamper{}
	svc := newService(b, enf)
	ctx := context.Background()
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := svc.HandleAlert(ctx, alert(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, enf.at.Sub(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

func TestProtectRefusesBeforeStoring(t *testing.T) {
	enf := newFake()
	svc := newService(t, enf)
	own := netip.MustParsePrefix("198.18.0.1/32")
	svc.Protect = func(p netip.Prefix) error {
		if p.Overlaps(own) {
			return errors.New("this host's address")
		}
		return nil
	}
	ctx := context.Background()
	if _, err := svc.HandleAlert(ctx, alert("198.18.0.1")); !errors.Is(err, ErrProtected) {
		t.Fatalf("HandleAlert on a protected source: %v, want ErrProtected", err)
	}
	err := svc.Add(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.0.0/24"), Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(time.Hour)}})
	if !errors.Is(err, ErrProtected) {
		t.Fatalf("Add of a range covering a protected address: %v, want ErrProtected", err)
	}
	active, err := svc.ActiveDecisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 0 || enf.calls != 0 {
		t.Fatalf("refused decisions reached the store (%d active) or the kernel (%d calls)", len(active), enf.calls)
	}
	if _, err := svc.HandleAlert(ctx, alert("198.18.0.2")); err != nil || !enf.banned("198.18.0.2") {
		t.Fatalf("an unprotected source was not banned: %v", err)
	}
}
