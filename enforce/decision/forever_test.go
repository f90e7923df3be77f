package decision

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

const foreverProfiles = `name: worms
filters: ["Alert.GetScenario() == 'worm'"]
decisions: [{type: ban, duration: forever}]
on_success: break
---
name: rest
filters: ["true"]
decisions: [{type: ban, duration: 1h}]
duration_escalation: {factor: 2, max: 4h}
recidive: {bans: 3, within: 1h, duration: forever}
`

func openAt(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func alertOn(ip, scenario string) model.Alert {
	a := netip.MustParseAddr(ip)
	return model.Alert{Scenario: scenario, Scope: model.ScopeIP, Value: ip, Source: netip.PrefixFrom(a, 32), Remediation: true}
}

// Forever bans, from a profile and from the CLI, outlive expiry passes,
// retention and a restart; the recidive rule counts bans across scenarios
// in the real store.
func TestForeverSurvivesExpiryAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	prof, err := profile.Parse("p.yaml", []byte(foreverProfiles))
	if err != nil {
		t.Fatal(err)
	}
	prof.Rand = func() float64 { return 0.5 }
	st := openAt(t, path)
	svc, err := New(st, prof, newFake())
	if err != nil {
		t.Fatal(err)
	}
	ds, err := svc.HandleAlert(ctx, alertOn("198.18.9.1", "worm"))
	if err != nil || len(ds) != 1 || !ds[0].Until.IsZero() {
		t.Fatalf("worm: %+v, %v", ds, err)
	}
	cli := []model.Decision{{Value: netip.MustParsePrefix("198.18.9.2/32"), Type: "ban", Origin: model.OriginCLI}}
	if err := svc.Add(ctx, cli); err != nil {
		t.Fatal(err)
	}
	// Three scenarios against one address: 1h, 2h, then recidive: forever.
	want := []time.Duration{time.Hour, 2 * time.Hour, 0}
	for i, sc := range []string{"ssh-bf", "http-probing", "smtp-bf"} {
		now := time.Now()
		ds, err := svc.HandleAlert(ctx, alertOn("198.18.9.3", sc))
		if err != nil || len(ds) != 1 {
			t.Fatalf("ban %d: %+v, %v", i+1, ds, err)
		}
		got := time.Duration(0)
		if !ds[0].Until.IsZero() {
			got = ds[0].Until.Sub(now).Round(time.Hour)
		}
		if got != want[i] {
			t.Errorf("ban %d (%s): %s, want %s", i+1, sc, got, want[i])
		}
	}
	if _, err := svc.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expire(ctx, time.Now().Add(50*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Prune(ctx, time.Now().Add(50*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = openAt(t, path)
	defer st.Close()
	svc, err = New(st, prof, newFake())
	if err != nil {
		t.Fatal(err)
	}
	active, err := svc.ActiveDecisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var forever []string
	for _, d := range active {
		if d.Until.IsZero() {
			forever = append(forever, model.ValueString(d.Value))
		}
	}
	slices.Sort(forever)
	if !slices.Equal(forever, []string{"198.18.9.1", "198.18.9.2", "198.18.9.3"}) {
		t.Errorf("forever bans after expiry passes and a restart: %v (active %+v)", forever, active)
	}
}

// events records what Enforced hears.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) record(ban bool, ds []model.Decision) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range ds {
		kind := "unban"
		if ban {
			kind = "ban"
		}
		e.got = append(e.got, kind+" "+model.ValueString(d.Value))
	}
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

func TestEnforcedHook(t *testing.T) {
	ctx := context.Background()
	st := openAt(t, filepath.Join(t.TempDir(), store.FileName))
	defer st.Close()
	prof, err := profile.Parse("p.yaml", []byte(foreverProfiles))
	if err != nil {
		t.Fatal(err)
	}
	enf := newFake()
	svc, err := New(st, prof, enf)
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	svc.Enforced = func(ban bool, ds []model.Decision) {
		// The kernel already holds a ban when its action hears of it.
		for _, d := range ds {
			if ban && !enf.banned(d.Value.Addr().String()) {
				t.Errorf("ban of %s announced before the kernel held it", d.Value)
			}
		}
		ev.record(ban, ds)
	}
	if _, err := svc.HandleAlert(ctx, alertOn("198.18.9.10", "ssh-bf")); err != nil {
		t.Fatal(err)
	}
	short := []model.Decision{
		{Value: netip.MustParsePrefix("198.18.9.11/32"), Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(30 * time.Millisecond)},
		{Value: netip.MustParsePrefix("198.18.9.12/32"), Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(time.Hour), Simulated: true},
	}
	if err := svc.Add(ctx, short); err != nil {
		t.Fatal(err)
	}
	if got, want := ev.take(), []string{"ban 198.18.9.10", "ban 198.18.9.11"}; !slices.Equal(got, want) {
		t.Errorf("bans: %v, want %v (simulated ones are not announced)", got, want)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := svc.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	if got, want := ev.take(), []string{"unban 198.18.9.11"}; !slices.Equal(got, want) {
		t.Errorf("expiry: %v, want %v", got, want)
	}
	if _, err := svc.Delete(ctx, store.Filter{Value: "198.18.9.10"}); err != nil {
		t.Fatal(err)
	}
	if got, want := ev.take(), []string{"unban 198.18.9.10"}; !slices.Equal(got, want) {
		t.Errorf("delete: %v, want %v", got, want)
	}
	if err := svc.Add(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.9.20/32"), Type: "ban", Origin: model.OriginCLI}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddAllow(ctx, netip.MustParsePrefix("198.18.9.20/32"), "office", false); err != nil {
		t.Fatal(err)
	}
	if got, want := ev.take(), []string{"ban 198.18.9.20", "unban 198.18.9.20"}; !slices.Equal(got, want) {
		t.Errorf("allowlisted: %v, want %v", got, want)
	}
}
