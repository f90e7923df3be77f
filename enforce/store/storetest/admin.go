package storetest

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// allowlist: entries are listed by value, a second add is ErrExists and
// deleting a missing one ErrNotFound.
func allowlist(t *testing.T, s Store) {
	ctx := context.Background()
	created := time.Unix(1_700_000_000, 0)
	for _, v := range []string{"198.18.7.0/24", "2001:db8::/48", "198.18.0.1"} {
		p, err := model.ParseValue(v)
		check(t, err)
		check(t, s.AddAllow(ctx, store.AllowEntry{Value: p, Reason: "office " + v, Created: created}))
	}
	err := s.AddAllow(ctx, store.AllowEntry{Value: netip.MustParsePrefix("198.18.0.1/32"), Reason: "again"})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("second add: %v, want ErrExists", err)
	}
	got := ok(s.ListAllow(ctx))(t)
	var values []string
	for _, e := range got {
		values = append(values, model.ValueString(e.Value))
		if !e.Created.Equal(created) || e.Reason != "office "+model.ValueString(e.Value) {
			t.Errorf("entry %+v", e)
		}
	}
	if want := []string{"198.18.0.1", "198.18.7.0/24", "2001:db8::/48"}; !slices.Equal(values, want) {
		t.Errorf("ListAllow: %v, want %v", values, want)
	}
	check(t, s.DeleteAllow(ctx, netip.MustParsePrefix("198.18.7.0/24")))
	if err := s.DeleteAllow(ctx, netip.MustParsePrefix("198.18.7.0/24")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	if n := len(ok(s.ListAllow(ctx))(t)); n != 2 {
		t.Errorf("%d entries left, want 2", n)
	}
	if c := ok(s.Counts(ctx))(t); c.Allowlist != 2 {
		t.Errorf("Counts.Allowlist %d, want 2", c.Allowlist)
	}
}

// bouncers: a key authenticates its bouncer only, visits are recorded,
// and a deleted bouncer's key stops working.
func bouncers(t *testing.T, s Store) {
	ctx := context.Background()
	k1 := ok(s.AddBouncer(ctx, "fw1"))(t)
	k2 := ok(s.AddBouncer(ctx, "nginx"))(t)
	if len(k1) != 64 || k1 == k2 {
		t.Fatalf("keys %q %q", k1, k2)
	}
	if _, err := s.AddBouncer(ctx, "fw1"); !errors.Is(err, store.ErrExists) {
		t.Errorf("second fw1: %v, want ErrExists", err)
	}
	if _, err := s.AddBouncer(ctx, ""); err == nil {
		t.Error("a bouncer without a name was added")
	}
	b := ok(s.AuthBouncer(ctx, k2))(t)
	if b.Name != "nginx" || b.Created.IsZero() {
		t.Errorf("AuthBouncer: %+v", b)
	}
	for _, bad := range []string{"", k1[:63], k1 + "0", "0" + k1[1:]} {
		if bad == k1 {
			continue
		}
		if _, err := s.AuthBouncer(ctx, bad); !errors.Is(err, store.ErrUnauthorized) {
			t.Errorf("key %q: %v, want ErrUnauthorized", bad, err)
		}
	}
	at := time.Unix(1_700_000_000, 5)
	check(t, s.BouncerPulled(ctx, "fw1", 42, at, "198.51.100.7", "cs-firewall-bouncer/v0.0.31"))
	check(t, s.BouncerPulled(ctx, "fw1", 0, at.Add(time.Second), "198.51.100.8", "curl"))
	list := ok(s.ListBouncers(ctx))(t)
	if len(list) != 2 || list[0].Name != "fw1" || list[1].Name != "nginx" {
		t.Fatalf("ListBouncers: %+v", list)
	}
	if f := list[0]; f.LastSeq != 42 || !f.LastSeen.Equal(at.Add(time.Second)) || f.LastIP != "198.51.100.8" || f.UserAgent != "curl" {
		t.Errorf("fw1 after two visits: %+v", f)
	}
	check(t, s.DeleteBouncer(ctx, "fw1"))
	if _, err := s.AuthBouncer(ctx, k1); !errors.Is(err, store.ErrUnauthorized) {
		t.Errorf("deleted bouncer's key: %v, want ErrUnauthorized", err)
	}
	if err := s.DeleteBouncer(ctx, "fw1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
	if c := ok(s.Counts(ctx))(t); c.Bouncers != 1 {
		t.Errorf("Counts.Bouncers %d, want 1", c.Bouncers)
	}
}

// alerts inserts n alerts on 198.18.5.x, the first with an active
// decision when withBan, and returns their IDs.
func alerts(t *testing.T, s Store, n int, withBan bool) []int64 {
	t.Helper()
	var out []int64
	for i := range n {
		var ds []model.Decision
		if i == 0 && withBan {
			ds = []model.Decision{ban(addr(0x500+i), model.OriginLocal, "crowdsecurity/ssh-bf", time.Now().Add(time.Hour))}
		}
		out = append(out, ok(s.InsertAlert(context.Background(), alert("crowdsecurity/ssh-bf", addr(0x500+i).Addr().String()), ds))(t))
	}
	return out
}

// capAlerts: the newest max alerts stay, and older ones an active
// decision refers to.
func capAlerts(t *testing.T, s Store) {
	ctx := context.Background()
	as := alerts(t, s, 5, true)
	n := ok(s.CapAlerts(ctx, 2))(t)
	if n != 2 {
		t.Errorf("CapAlerts(2) deleted %d, want 2", n)
	}
	left := ok(s.ListAlerts(ctx, store.AlertFilter{}))(t)
	var got []int64
	for _, a := range left {
		got = append(got, a.ID)
	}
	wantIDs(t, "alerts left", got, []int64{as[4], as[3], as[0]})
	if n := ok(s.CapAlerts(ctx, 10))(t); n != 0 {
		t.Errorf("CapAlerts(10) deleted %d", n)
	}
	if n := ok(s.CapAlerts(ctx, 0))(t); n != 2 {
		t.Errorf("CapAlerts(0) deleted %d, want 2 (the banned one stays)", n)
	}
}

// prune: ended decisions before the cutoff go, and alerts before it that
// no active decision refers to.
func prune(t *testing.T, s Store) {
	ctx := context.Background()
	as := alerts(t, s, 3, true)
	ended := insertN(t, s, 1, 4, time.Now().Add(time.Hour))
	active := insertN(t, s, 10, 2, time.Now().Add(time.Hour))
	ok(s.DeleteIDs(ctx, []int64{ended[0].ID, ended[1].ID, ended[2].ID, ended[3].ID}))(t)
	st := ok(s.Prune(ctx, time.Now().Add(-time.Hour)))(t)
	if st.Decisions != 0 || st.Alerts != 0 {
		t.Errorf("prune before anything ended: %+v", st)
	}
	st = ok(s.Prune(ctx, time.Now().Add(time.Minute)))(t)
	if st.Decisions != 4 || st.Alerts != 2 {
		t.Errorf("Prune: %+v, want 4 decisions and 2 alerts", st)
	}
	if _, err := s.GetAlert(ctx, as[0]); err != nil {
		t.Errorf("the banned alert was pruned: %v", err)
	}
	c := ok(s.Counts(ctx))(t)
	if c.Decisions != 3 || c.ActiveDecisions != 3 || c.Alerts != 1 {
		t.Errorf("Counts after prune: %+v", c)
	}
	if n := ok(s.CountDecisions(ctx, model.ValueString(ended[0].Value), time.Time{}))(t); n != 0 {
		t.Errorf("a pruned decision still counts: %d", n)
	}
	if n := ok(s.CountDecisions(ctx, model.ValueString(active[0].Value), time.Time{}))(t); n != 1 {
		t.Errorf("an active decision counts %d, want 1", n)
	}
}

// listPages: pages add up to the listing, newest first, within the limit.
func listPages(t *testing.T, s Store) {
	ctx := context.Background()
	ds := insertN(t, s, 1, 10, time.Now().Add(time.Hour))
	var got []int64
	pages := 0
	check(t, s.ListPages(ctx, store.Filter{}, 3, func(rs []store.Record) error {
		pages++
		got = append(got, ids(rs)...)
		return nil
	}))
	var want []int64
	for i := len(ds) - 1; i >= 0; i-- {
		want = append(want, ds[i].ID)
	}
	wantIDs(t, "pages", got, want)
	if pages != 4 {
		t.Errorf("%d pages of 3 for 10, want 4", pages)
	}
	got = got[:0]
	check(t, s.ListPages(ctx, store.Filter{Limit: 5, Origin: "list"}, 3, func(rs []store.Record) error {
		got = append(got, ids(rs)...)
		return nil
	}))
	wantIDs(t, "pages within a limit", got, want[:5])
	stop := errors.New("stop")
	if err := s.ListPages(ctx, store.Filter{}, 3, func([]store.Record) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: %v", err)
	}
}

// machines: a machine logs in with its password once approved; a wrong
// password and an unknown machine are the same error; logins and
// heartbeats are recorded.
func machines(t *testing.T, s Store) {
	ctx := context.Background()
	check(t, s.AddMachine(ctx, "agent-1", "pw-one", false, "192.0.2.1"))
	check(t, s.AddMachine(ctx, "agent-2", "pw-two", true, ""))
	if err := s.AddMachine(ctx, "agent-1", "other", true, ""); !errors.Is(err, store.ErrExists) {
		t.Errorf("second agent-1: %v, want ErrExists", err)
	}
	for _, bad := range [][2]string{{"", "pw"}, {"agent-3", ""}, {"agent-3", string(make([]byte, store.MaxPasswordBytes+1))}} {
		if err := s.AddMachine(ctx, bad[0], bad[1], true, ""); err == nil {
			t.Errorf("machine %q with a %d-byte password was added", bad[0], len(bad[1]))
		}
	}
	logins := []struct {
		id, pw string
		want   error
	}{
		{"agent-1", "pw-one", store.ErrNotApproved},
		{"agent-1", "wrong", store.ErrBadPassword},
		{"agent-2", "pw-one", store.ErrBadPassword},
		{"nobody", "pw-two", store.ErrBadPassword},
		{"agent-2", "pw-two", nil},
	}
	for _, l := range logins {
		m, err := s.AuthMachine(ctx, l.id, l.pw, "192.0.2.7", "crowdsec/v1.6", []string{"a/b", "c/d"})
		if !errors.Is(err, l.want) {
			t.Errorf("login %s/%s: %v, want %v", l.id, l.pw, err, l.want)
		}
		if l.want == nil && (m.ID != l.id || m.IP != "192.0.2.7" || m.Scenarios != "a/b,c/d" || m.LastLogin.IsZero()) {
			t.Errorf("login %s: %+v", l.id, m)
		}
	}
	check(t, s.ApproveMachine(ctx, "agent-1"))
	ok(s.AuthMachine(ctx, "agent-1", "pw-one", "192.0.2.8", "v", nil))(t)
	beat := time.Unix(1_700_000_000, 42)
	check(t, s.MachineHeartbeat(ctx, "agent-1", beat, "192.0.2.9"))
	m := ok(s.GetMachine(ctx, "agent-1"))(t)
	if !m.Approved || !m.LastHeartbeat.Equal(beat) || m.IP != "192.0.2.9" || m.Version != "v" || m.Created.IsZero() {
		t.Errorf("agent-1: %+v", m)
	}
	check(t, s.DeleteMachine(ctx, "agent-2"))
	list := ok(s.ListMachines(ctx))(t)
	if len(list) != 1 || list[0].ID != "agent-1" {
		t.Errorf("ListMachines: %+v", list)
	}
	for name, err := range map[string]error{
		"approve": s.ApproveMachine(ctx, "agent-2"),
		"delete":  s.DeleteMachine(ctx, "agent-2"),
		"beat":    s.MachineHeartbeat(ctx, "agent-2", beat, ""),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s a deleted machine: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.GetMachine(ctx, "agent-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get a deleted machine: %v, want ErrNotFound", err)
	}
}
