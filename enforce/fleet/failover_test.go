package fleet

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// newReplica is a second server on f's store and decision service, as two
// daemons on one PostgreSQL store are: one decision sequence, and each
// commit wakes both servers' streams. It signs its tokens with its own
// secret, so a token of one replica is refused by the other.
func newReplica(t *testing.T, f *fleetServer) *fleetServer {
	t.Helper()
	srv := api.NewServer(f.svc, f.st, nil)
	srv.Changes = f.srv.Changes
	srv.FleetHeartbeat = 100 * time.Millisecond
	if err := srv.EnableMachines(api.MachineConfig{Store: f.st, TokenLifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r := &fleetServer{t: t, st: f.st, svc: f.svc, srv: srv}
	r.revoked.Store("")
	r.start()
	t.Cleanup(r.stop)
	return r
}

// The replica streaming to the agent goes away while the servers ban: the
// agent moves to the other replica and resumes from the shared sequence,
// missing nothing and applying nothing twice; then the first returns and
// the second goes, and the agent moves back.
func TestFailoverToReplica(t *testing.T) {
	p := newFleetServer(t)
	r := newReplica(t, p)
	a := newAgent(t)
	a.run(t, "", func(c *Config) { c.Servers = []string{p.url(), r.url()} })
	for i := range 20 {
		p.ban(t, addr(i))
	}
	waitFor(t, "the first bans", func() bool { return a.enf.count() == 20 })
	if got := a.client.Server(); got != p.url() {
		t.Fatalf("streaming from %s, want the first replica %s", got, p.url())
	}

	for i := 20; i < 200; i++ {
		if i == 60 {
			p.stop()
		}
		if i == 140 {
			// Back on the first address; the second goes.
			p.start()
			r.stop()
		}
		p.ban(t, addr(i))
		if i%10 == 0 {
			// A change now and then lands between the failovers.
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, "every ban across the failovers", func() bool { return a.enf.count() == 200 })
	for i := range 200 {
		if !a.enf.holds(addr(i)) {
			t.Errorf("%s missed", addr(i))
		}
	}
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once: %v", tw)
	}
	st := a.client.Stats()
	if st.Failovers < 2 {
		t.Fatalf("%d failovers, want at least 2", st.Failovers)
	}
	if got := a.client.Server(); got != p.url() {
		t.Fatalf("streaming from %s after the second replica went, want %s", got, p.url())
	}
	t.Logf("failovers %d, reconnects %d, position %d", st.Failovers, st.Reconnects, st.Seq)

	// The saved position is taken up by a restarted agent whichever
	// replica it was read from: nothing is applied again.
	a.stop()
	p.ban(t, addr(300))
	a.run(t, "", func(c *Config) { c.Servers = []string{r.url(), p.url()} })
	waitFor(t, "the ban made while the agent was down", func() bool { return a.enf.holds(addr(300)) })
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once after a restart: %v", tw)
	}
}

// An agent whose first replica is down from the start streams from the
// next one, and pushes to it.
func TestFirstReplicaDown(t *testing.T) {
	p := newFleetServer(t)
	r := newReplica(t, p)
	p.stop()
	a := newAgent(t)
	a.run(t, "", func(c *Config) { c.Servers = []string{p.url(), r.url()} })
	p.ban(t, addr(1))
	waitFor(t, "a ban through the second replica", func() bool { return a.enf.holds(addr(1)) })
	if got := a.client.Server(); got != r.url() {
		t.Fatalf("streaming from %s, want %s", got, r.url())
	}
}

// Pushes follow the replicas too: an alert pushed while the replica in
// use is down is stored through the other, and each replica got a login
// of its own (their token secrets differ).
func TestPushFailsOver(t *testing.T) {
	p := newFleetServer(t)
	r := newReplica(t, p)
	a := newAgent(t)
	a.run(t, "", func(c *Config) { c.Servers = []string{p.url(), r.url()} })
	waitFor(t, "the stream", func() bool { return a.client.Stats().Connected })
	push := func(ip string) {
		alert := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: ip,
			Source: netip.MustParsePrefix(ip + "/32"), Start: time.Now(), Stop: time.Now(), EventsCount: 6}
		ban := model.Decision{Value: alert.Source, Type: "ban", Origin: model.OriginLocal, Scenario: alert.Scenario, Until: time.Now().Add(time.Hour)}
		a.client.Push(alert, []model.Decision{ban})
	}
	push("203.0.113.1")
	waitFor(t, "the first push", func() bool { return a.client.Stats().Pushed == 1 })
	p.stop()
	push("203.0.113.2")
	waitFor(t, "the push through the second replica", func() bool { return a.client.Stats().Pushed == 2 })
	recs, err := p.st.ListAlerts(context.Background(), store.AlertFilter{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("stored alerts: %v, %d, want 2", err, len(recs))
	}
	if p.logins.Load() != 1 || r.logins.Load() != 1 {
		t.Fatalf("logins: %d on the first replica, %d on the second, want 1 each", p.logins.Load(), r.logins.Load())
	}
}

func TestOneOfServerAndServers(t *testing.T) {
	_, err := New(Config{Server: "http://127.0.0.1:1", Servers: []string{"http://127.0.0.1:2"}, MachineID: "a", Password: "b", Applier: &ServiceApplier{}})
	if err == nil {
		t.Fatal("Server and Servers both set: no error")
	}
}
