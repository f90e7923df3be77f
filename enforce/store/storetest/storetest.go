// Package storetest is the behaviour every store implementation shares,
// as one table of cases: the embedded SQLite store and the PostgreSQL one
// run it (see storetest_test.go), and a third implementation would too.
// Each case gets a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Store is what the daemon and the API use of a store.
type Store interface {
	decision.Store
	api.Store
	api.MachineStore
}

// Case is one behaviour of the contract.
type Case struct {
	Name string
	Run  func(t *testing.T, s Store)
}

// Cases is the contract.
var Cases = []Case{
	{"InsertAndFilter", insertAndFilter},
	{"ReserveIDs", reserveIDs},
	{"StreamOrder", streamOrder},
	{"StreamPaged", streamPaged},
	{"Delete", deleteCase},
	{"Expire", expire},
	{"Allowlist", allowlist},
	{"Bouncers", bouncers},
	{"CapAlerts", capAlerts},
	{"Prune", prune},
	{"ListPages", listPages},
	{"Machines", machines},
	{"PortScoped", portScoped},
	{"GeoScoped", geoScoped},
	{"AllowExpiry", allowExpiry},
}

// Run runs every case, each on a store open returns.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, open(t)) })
	}
}

// ip is a single address as a decision value.
func ip(s string) netip.Prefix {
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

func ban(value netip.Prefix, origin model.Origin, scenario string, until time.Time) model.Decision {
	return model.Decision{Value: value, Type: "ban", Origin: origin, Scenario: scenario, Until: until}
}

func alert(scenario, value string) model.Alert {
	return model.Alert{Scenario: scenario, Scope: model.ScopeIP, Value: value, EventsCount: 3,
		Events: []map[string]string{{"n": "1"}, {"n": "2"}, {"n": "3"}}, Meta: map[string]string{"service": "ssh"},
		Context: alertContext}
}

// alertContext is an alert context as log lines fill it: a NUL, a quote
// and an escape sequence are stored as they are.
var alertContext = map[string][]string{"target_user": {"root", "ad\x00min", "'; DROP TABLE alerts; --\x1b[2J"}}

func ids(rs []store.Record) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func decisionIDs(ds []model.Decision) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	slices.Sort(out)
	return out
}

// ok(f())(t) is f's value, failing the test on f's error.
func ok[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantIDs(t *testing.T, what string, got, want []int64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: IDs %v, want %v", what, got, want)
	}
}

// insertAndFilter: an alert with an address and a range, a CLI decision
// and a simulated one; every filter selects what it should, newest first.
func insertAndFilter(t *testing.T, s Store) {
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	ds := []model.Decision{
		ban(ip("198.18.0.5"), model.OriginLocal, "crowdsecurity/ssh-bf", until),
		ban(netip.MustParsePrefix("198.18.1.0/24"), model.OriginLocal, "crowdsecurity/ssh-bf", until),
	}
	aid := ok(s.InsertAlert(ctx, alert("crowdsecurity/ssh-bf", "198.18.0.5"), ds))(t)
	if ds[0].ID <= 0 || ds[1].ID <= ds[0].ID {
		t.Fatalf("alert decisions got IDs %d, %d: want positive and increasing", ds[0].ID, ds[1].ID)
	}
	cli := []model.Decision{ban(ip("2001:db8::1"), model.OriginCLI, "manual", time.Time{})}
	check(t, s.InsertDecisions(ctx, cli))
	sim := ban(ip("198.18.0.9"), model.OriginLocal, "crowdsecurity/http-probing", until)
	sim.Simulated = true
	check(t, s.InsertDecisions(ctx, []model.Decision{sim}))
	all := ok(s.ListDecisions(ctx, store.Filter{}))(t)
	if len(all) != 4 || all[0].Value != ip("198.18.0.9") || all[3].Value != ip("198.18.0.5") {
		t.Fatalf("ListDecisions: %v, want 4 newest first", all)
	}
	if all[3].AlertID != aid || all[2].AlertID != aid || all[1].AlertID != 0 || all[3].Created.IsZero() || !all[3].Until.Equal(until) {
		t.Errorf("bookkeeping: %+v", all)
	}
	if all[2].Scope() != model.ScopeRange || !all[1].Until.IsZero() {
		t.Errorf("range scope or never-expiring until: %+v %+v", all[2], all[1])
	}
	filters := []struct {
		name string
		f    store.Filter
		want []int64
	}{
		{"ip exact", store.Filter{IP: netip.MustParseAddr("198.18.0.5")}, []int64{ds[0].ID}},
		{"ip in range", store.Filter{IP: netip.MustParseAddr("198.18.1.200")}, []int64{ds[1].ID}},
		{"ipv4-mapped", store.Filter{IP: netip.MustParseAddr("::ffff:198.18.1.1")}, []int64{ds[1].ID}},
		{"ip none", store.Filter{IP: netip.MustParseAddr("198.18.2.1")}, nil},
		{"range inside", store.Filter{Range: netip.MustParsePrefix("198.18.1.128/25")}, []int64{ds[1].ID}},
		{"range wider", store.Filter{Range: netip.MustParsePrefix("198.18.0.0/16")}, nil},
		{"value", store.Filter{Value: "2001:db8::1"}, []int64{cli[0].ID}},
		{"scope any case", store.Filter{Scope: "range"}, []int64{ds[1].ID}},
		{"origin", store.Filter{Origin: "cli"}, []int64{cli[0].ID}},
		{"scenario substring", store.Filter{Scenario: "ssh"}, []int64{ds[1].ID, ds[0].ID}},
		{"id", store.Filter{ID: ds[0].ID}, []int64{ds[0].ID}},
		{"limit", store.Filter{Limit: 2}, []int64{all[0].ID, all[1].ID}},
	}
	for _, c := range filters {
		got := ok(s.ListDecisions(ctx, c.f))(t)
		wantIDs(t, c.name, ids(got), c.want)
		c.f.Limit = 0
		if n := ok(s.CountMatching(ctx, c.f))(t); c.name != "limit" && n != len(c.want) {
			t.Errorf("%s: CountMatching %d, want %d", c.name, n, len(c.want))
		}
	}
	a := ok(s.GetAlert(ctx, aid))(t)
	if a.Alert.Scenario != "crowdsecurity/ssh-bf" || a.Alert.Meta["service"] != "ssh" || len(a.Alert.Events) != 3 || a.Created.IsZero() {
		t.Errorf("GetAlert: %+v", a)
	}
	if !maps.EqualFunc(a.Alert.Context, alertContext, slices.Equal) {
		t.Errorf("GetAlert context %q, want %q", a.Alert.Context, alertContext)
	}
	wantIDs(t, "alert decisions", a.Decisions, []int64{ds[0].ID, ds[1].ID})
	if _, err := s.GetAlert(ctx, aid+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAlert of a missing alert: %v, want ErrNotFound", err)
	}
	as := ok(s.ListAlerts(ctx, store.AlertFilter{Scenario: "ssh"}))(t)
	if len(as) != 1 || as[0].ID != aid || !slices.Equal(as[0].Decisions, a.Decisions) {
		t.Errorf("ListAlerts: %+v", as)
	}
	for _, f := range []store.AlertFilter{{Value: "198.18.9.9"}, {Scope: model.ScopeRange}, {Until: a.Created}, {Since: a.Created.Add(time.Nanosecond)}} {
		if as := ok(s.ListAlerts(ctx, f))(t); len(as) != 0 {
			t.Errorf("ListAlerts(%+v): %+v, want none", f, as)
		}
	}
	for _, f := range []store.AlertFilter{{Value: "198.18.0.5", Scope: model.ScopeIP}, {Until: a.Created.Add(time.Nanosecond), Since: a.Created}} {
		if as := ok(s.ListAlerts(ctx, f))(t); len(as) != 1 {
			t.Errorf("ListAlerts(%+v): %d alerts, want 1", f, len(as))
		}
	}
	now := time.Now()
	if !ok(s.HasActive(ctx, "198.18.0.5", "crowdsecurity/ssh-bf", now))(t) {
		t.Error("HasActive: the alert's decision is not found")
	}
	if ok(s.HasActive(ctx, "198.18.0.5", "other", now))(t) || ok(s.HasActive(ctx, "2001:db8::1", "manual", now))(t) {
		t.Error("HasActive: true for another scenario or a decision no alert produced")
	}
	if n := ok(s.CountDecisions(ctx, "198.18.0.5", now.Add(-time.Minute)))(t); n != 1 {
		t.Errorf("CountDecisions: %d, want 1", n)
	}
	if n := ok(s.CountDecisions(ctx, "198.18.0.5", now.Add(time.Minute)))(t); n != 0 {
		t.Errorf("CountDecisions since later: %d, want 0", n)
	}
	byOrigin := ok(s.ActiveByOrigin(ctx, now))(t)
	if byOrigin[model.OriginLocal] != 2 || byOrigin[model.OriginCLI] != 1 || len(byOrigin) != 2 {
		t.Errorf("ActiveByOrigin (simulated left out): %v", byOrigin)
	}
	c := ok(s.Counts(ctx))(t)
	if c.ActiveDecisions != 4 || c.Decisions != 4 || c.Alerts != 1 || c.FileBytes <= 0 {
		t.Errorf("Counts: %+v", c)
	}
	if _, err := s.InsertAlert(ctx, alert("x", "y"), []model.Decision{{Type: "ban"}}); err == nil {
		t.Error("a decision without a value was stored")
	}
}

// reserveIDs: reserved IDs never overlap, and a decision keeps the ID it
// was given.
func reserveIDs(t *testing.T, s Store) {
	ctx := context.Background()
	a := s.ReserveIDs(3)
	b := s.ReserveIDs(2000)
	c := s.ReserveIDs(1)
	overlap := func(x, n, y, m int64) bool { return x < y+m && y < x+n }
	if a <= 0 || overlap(a, 3, b, 2000) || overlap(a, 3, c, 1) || overlap(b, 2000, c, 1) {
		t.Fatalf("ReserveIDs: 3 at %d, 2000 at %d, 1 at %d: ranges overlap", a, b, c)
	}
	ds := []model.Decision{ban(ip("198.18.3.1"), model.OriginAPI, "", time.Time{})}
	ds[0].ID = b + 1999
	check(t, s.InsertDecisions(ctx, ds))
	fresh := []model.Decision{ban(ip("198.18.3.2"), model.OriginAPI, "", time.Time{})}
	check(t, s.InsertDecisions(ctx, fresh))
	if fresh[0].ID == ds[0].ID || fresh[0].ID == a || fresh[0].ID == c {
		t.Errorf("fresh ID %d was reserved before", fresh[0].ID)
	}
	got := ok(s.ListDecisions(ctx, store.Filter{Value: "198.18.3.1"}))(t)
	wantIDs(t, "reserved", ids(got), []int64{b + 1999})
}
