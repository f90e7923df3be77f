package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// countingEnforcer records what the kernel would hold, and how many times
// each value was added, to catch a decision applied twice.
type countingEnforcer struct {
	mu    sync.Mutex
	held  map[int64]model.Decision
	added map[netip.Prefix]int
}

func newCountingEnforcer() *countingEnforcer {
	return &countingEnforcer{held: map[int64]model.Decision{}, added: map[netip.Prefix]int{}}
}

func (e *countingEnforcer) Apply(_ context.Context, add, remove []model.Decision) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range add {
		e.held[d.ID] = d
		e.added[d.Value]++
	}
	for _, d := range remove {
		delete(e.held, d.ID)
	}
	return nil
}

// holds reports whether the kernel holds value.
func (e *countingEnforcer) holds(v string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := netip.MustParsePrefix(v)
	for _, d := range e.held {
		if d.Value == p {
			return true
		}
	}
	return false
}

func (e *countingEnforcer) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.held)
}

// twice returns the values added more than once.
func (e *countingEnforcer) twice() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for v, n := range e.added {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", v, n))
		}
	}
	return out
}

func newService(t *testing.T, enf decision.Enforcer, wrap func(decision.Store) decision.Store) (*store.Store, *decision.Service) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prof, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	var ds decision.Store = st
	if wrap != nil {
		ds = wrap(st)
	}
	svc, err := decision.New(ds, prof, enf)
	if err != nil {
		t.Fatal(err)
	}
	return st, svc
}

// fleetServer is a moat fleet server on a loopback port that can be
// stopped and started again on the same address.
type fleetServer struct {
	t    *testing.T
	st   *store.Store
	svc  *decision.Service
	srv  *api.Server
	addr string
	hs   *httptest.Server
	// revoked is a token the server answers 401 to, as after a restart
	// with a new secret; logins counts the logins.
	revoked atomic.Value
	logins  atomic.Int64
	// noStream answers 404 to the fleet stream, as a CrowdSec LAPI does.
	noStream bool
}

func newFleetServer(t *testing.T) *fleetServer {
	t.Helper()
	changes := api.NewChanges()
	st, svc := newService(t, nil, changes.Wrap)
	srv := api.NewServer(svc, st, nil)
	srv.Changes = changes
	srv.FleetHeartbeat = 100 * time.Millisecond
	if err := srv.EnableMachines(api.MachineConfig{Store: st, Secret: testSecret, TokenLifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMachine(context.Background(), "agent-b", "password-b", true, ""); err != nil {
		t.Fatal(err)
	}
	f := &fleetServer{t: t, st: st, svc: svc, srv: srv}
	f.revoked.Store("")
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *fleetServer) handler() http.Handler {
	h := f.srv.MachineHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/watchers/login" {
			// A new login gets a token the server takes (the revoked
			// one stands for an expired one).
			f.logins.Add(1)
			f.revoked.Store("")
		}
		if f.noStream && r.URL.Path == api.FleetStreamPath {
			http.NotFound(w, r)
			return
		}
		if tok := f.revoked.Load().(string); tok != "" && r.Header.Get("Authorization") == "Bearer "+tok {
			http.Error(w, `{"message":"invalid token"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (f *fleetServer) start() {
	f.t.Helper()
	addr := f.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// The port of the stopped server may take a moment to be free.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.hs = &httptest.Server{Listener: ln, Config: &http.Server{Handler: f.handler()}}
	f.hs.Start()
}

func (f *fleetServer) stop() {
	if f.hs != nil {
		f.hs.CloseClientConnections()
		f.hs.Close()
		f.hs = nil
	}
}

func (f *fleetServer) url() string { return "http://" + f.addr }

// ban adds a manual ban on the server and returns its ID.
func (f *fleetServer) ban(t *testing.T, v string) int64 {
	t.Helper()
	ds := []model.Decision{{Value: netip.MustParsePrefix(v), Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(time.Hour)}}
	if err := f.svc.Add(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return ds[0].ID
}

func (f *fleetServer) unban(t *testing.T, v string) {
	t.Helper()
	ds, err := f.svc.Delete(context.Background(), store.Filter{Value: model.ValueString(netip.MustParsePrefix(v))})
	if err != nil || len(ds) != 1 {
		t.Fatalf("unban %s: %v (%d deleted)", v, err, len(ds))
	}
}

// agent is a fleet agent: its own store and service, a counting kernel,
// and the client, which run restarts.
type agent struct {
	enf      *countingEnforcer
	svc      *decision.Service
	stateDir string
	client   *Client
	cancel   context.CancelFunc
	done     chan struct{}
	errs     chan error
}

func newAgent(t *testing.T) *agent {
	enf := newCountingEnforcer()
	_, svc := newService(t, enf, nil)
	a := &agent{enf: enf, svc: svc, stateDir: t.TempDir(), errs: make(chan error, 1000)}
	t.Cleanup(a.stop)
	return a
}

func (a *agent) run(t *testing.T, server string, tweak func(*Config)) {
	t.Helper()
	cfg := Config{
		Server: server, MachineID: "agent-b", Password: "password-b", StateDir: a.stateDir,
		Applier: &ServiceApplier{Svc: a.svc}, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		StreamTimeout: time.Second,
		OnError: func(_ string, err error) {
			select {
			case a.errs <- err:
			default:
			}
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.client, a.cancel, a.done = c, cancel, make(chan struct{})
	go func() { defer close(a.done); c.Run(ctx) }()
}

func (a *agent) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func addr(i int) string { return fmt.Sprintf("198.51.%d.%d/32", i/250, i%250+1) }

// A stream cut over and over while the server bans and unbans: the agent
// ends up holding exactly the server's set, each decision applied once;
// a restart of the agent resumes from its saved position, replaying
// nothing.
func TestStreamResumesAfterDisconnect(t *testing.T) {
	srv := newFleetServer(t)
	for i := range 50 {
		srv.ban(t, addr(i))
	}
	a := newAgent(t)
	a.run(t, srv.url(), nil)
	waitFor(t, "the active set", func() bool { return a.enf.count() == 50 })

	// Bans and unbans while the connections are cut every few ms.
	stopCuts := make(chan struct{})
	var cuts sync.WaitGroup
	cuts.Add(1)
	go func() {
		defer cuts.Done()
		for {
			select {
			case <-stopCuts:
				return
			case <-time.After(3 * time.Millisecond):
				srv.hs.CloseClientConnections()
			}
		}
	}()
	for i := 50; i < 250; i++ {
		srv.ban(t, addr(i))
		if i%5 == 0 {
			srv.unban(t, addr(i-50))
		}
	}
	close(stopCuts)
	cuts.Wait()
	// 40 unbanned (i = 50, 55, ..., 245 unban i-50 = 0..195 step 5).
	want := 250 - 40
	waitFor(t, "the set after the cuts", func() bool { return a.enf.count() == want })
	for i := range 250 {
		unbanned := i%5 == 0 && i < 200
		if a.enf.holds(addr(i)) == unbanned {
			t.Errorf("%s: held %v, want %v", addr(i), !unbanned, unbanned)
		}
	}
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once: %v", tw)
	}
	if a.client.Stats().Reconnects == 0 {
		t.Fatal("no reconnect counted: the cuts did not cut")
	}

	// A restart resumes: the position was saved, so the new client asks
	// only for what came after, and nothing is added again.
	seq := a.client.Stats().Seq
	a.stop()
	srv.ban(t, addr(300))
	a.run(t, srv.url(), nil)
	waitFor(t, "the ban made while the agent was down", func() bool { return a.enf.holds(addr(300)) })
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once after a restart: %v", tw)
	}
	// The ban's checkpoint follows it: the position moves once the
	// agent read that line too.
	waitFor(t, "the position past the ban", func() bool { return a.client.Stats().Seq > seq })
}

// With the server down the agent keeps its fleet bans; they stay through
// the outage and the server's later changes arrive after it returns.
func TestFailStatic(t *testing.T) {
	srv := newFleetServer(t)
	srv.ban(t, "192.0.2.1/32")
	a := newAgent(t)
	a.run(t, srv.url(), nil)
	waitFor(t, "the first ban", func() bool { return a.enf.holds("192.0.2.1/32") })

	srv.stop()
	waitFor(t, "the stream to notice", func() bool { return !a.client.Stats().Connected })
	// Well past the stream timeout and many reconnect attempts.
	time.Sleep(1500 * time.Millisecond)
	if !a.enf.holds("192.0.2.1/32") {
		t.Fatal("the fleet ban was dropped while the server was down")
	}
	select {
	case err := <-a.errs:
		if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "connect") {
			t.Logf("error while down: %v", err)
		}
	default:
		t.Fatal("no error reported while the server was down")
	}

	srv.start()
	srv.ban(t, "192.0.2.2/32")
	srv.unban(t, "192.0.2.1/32")
	waitFor(t, "the changes made after the restart", func() bool {
		if a.enf.holds("192.0.2.2/32") && !a.enf.holds("192.0.2.1/32") {
			return true
		}
		select {
		case err := <-a.errs:
			t.Logf("%+v %v", a.client.Stats(), err)
		default:
		}
		return false
	})
}

// A token the server refuses (expired, or a server restarted with a new
// secret) makes the client log in again, for pushes and for the stream.
func TestBadTokenLogsInAgain(t *testing.T) {
	srv := newFleetServer(t)
	a := newAgent(t)
	a.run(t, srv.url(), nil)
	waitFor(t, "the stream", func() bool { return a.client.Stats().Connected })
	if n := srv.logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1 (pushes and the stream share the token)", n)
	}
	a.client.mu.Lock()
	srv.revoked.Store(a.client.token)
	a.client.mu.Unlock()

	alert := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: "203.0.113.9",
		Source: netip.MustParsePrefix("203.0.113.9/32"), Start: time.Now(), Stop: time.Now(), EventsCount: 6}
	ban := model.Decision{Value: alert.Source, Type: "ban", Origin: model.OriginLocal, Scenario: alert.Scenario, Until: time.Now().Add(time.Hour)}
	a.client.Push(alert, []model.Decision{ban})
	waitFor(t, "the push", func() bool { return a.client.Stats().Pushed == 1 })
	if n := srv.logins.Load(); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
	recs, err := srv.st.ListAlerts(context.Background(), store.AlertFilter{})
	if err != nil || len(recs) != 1 || recs[0].Alert.Labels["machine"] != "agent-b" || recs[0].Alert.Value != "203.0.113.9" {
		t.Fatalf("server alerts: %v %+v", err, recs)
	}
	// The pushed ban comes back by the stream, as every fleet decision
	// does, over a stream reopened with the new token; it is this host's
	// own ban, so it is not held a second time.
	srv.hs.CloseClientConnections()
	seq, err := srv.st.Seq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream past the pushed ban", func() bool { return a.client.Stats().Seq >= seq })
	if a.enf.holds("203.0.113.9/32") || a.client.Stats().Applied != 0 {
		t.Fatalf("the agent's own pushed ban was held again as a fleet decision: %+v", a.client.Stats())
	}
}

// A fleet decision is never pushed back to the server.
func TestFleetDecisionsAreNotPushed(t *testing.T) {
	c, err := New(Config{Server: "http://127.0.0.1:1", MachineID: "a", Password: "b", Applier: &ServiceApplier{}})
	if err != nil {
		t.Fatal(err)
	}
	c.Push(model.Alert{Scenario: "x"}, []model.Decision{{Origin: model.OriginFleet}})
	if len(c.queue) != 0 {
		t.Fatal("a fleet decision was queued for a push")
	}
}

// Against a server without a fleet stream (a CrowdSec LAPI) the agent
// polls the bouncer stream with its bouncer key.
func TestLAPIFallback(t *testing.T) {
	srv := newFleetServer(t)
	srv.noStream = true
	key, err := srv.st.AddBouncer(context.Background(), "agent-b-bouncer")
	if err != nil {
		t.Fatal(err)
	}
	srv.ban(t, "192.0.2.10/32")
	a := newAgent(t)
	a.run(t, srv.url(), func(c *Config) {
		c.BouncerKey = key
		c.PollInterval = 20 * time.Millisecond
	})
	waitFor(t, "the startup pull", func() bool { return a.enf.holds("192.0.2.10/32") })
	srv.ban(t, "192.0.2.11/32")
	srv.unban(t, "192.0.2.10/32")
	waitFor(t, "a delta", func() bool { return a.enf.holds("192.0.2.11/32") && !a.enf.holds("192.0.2.10/32") })
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once: %v", tw)
	}
}

// Without a bouncer key the fallback is reported, not taken.
func TestNoStreamNoKey(t *testing.T) {
	srv := newFleetServer(t)
	srv.noStream = true
	a := newAgent(t)
	a.run(t, srv.url(), nil)
	select {
	case err := <-a.errs:
		if !errors.Is(err, errNoStream) {
			t.Fatalf("error %v, want errNoStream", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reported")
	}
}

// An agent whose position is lost (or whose server got a new store) gets
// the whole active set, and drops the fleet decisions it holds that the
// server no longer has; its own local bans are left alone.
func TestStartupDropsWhatTheServerLost(t *testing.T) {
	srv := newFleetServer(t)
	kept := srv.ban(t, "192.0.2.20/32")
	a := newAgent(t)
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	seed := []model.Decision{
		{Value: netip.MustParsePrefix("192.0.2.20/32"), Type: "ban", Origin: model.OriginFleet, Reason: ReasonOf(kept), Until: until},
		{Value: netip.MustParsePrefix("192.0.2.21/32"), Type: "ban", Origin: model.OriginFleet, Reason: ReasonOf(kept + 1000), Until: until},
		{Value: netip.MustParsePrefix("192.0.2.22/32"), Type: "ban", Origin: model.OriginLocal, Scenario: "crowdsecurity/ssh-bf", Until: until},
	}
	if err := a.svc.Add(ctx, seed); err != nil {
		t.Fatal(err)
	}
	// A position far past the server's: its store is a new one.
	a.client = &Client{cfg: Config{Server: srv.url(), StateDir: a.stateDir}}
	if err := a.client.saveState(1 << 40); err != nil {
		t.Fatal(err)
	}
	a.run(t, srv.url(), nil)
	waitFor(t, "the lost decision dropped", func() bool { return !a.enf.holds("192.0.2.21/32") })
	if !a.enf.holds("192.0.2.20/32") || !a.enf.holds("192.0.2.22/32") {
		t.Fatal("a decision the server has, or a local one, was dropped")
	}
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Fatalf("applied more than once: %v", tw)
	}
	if got := a.client.Stats().Applied; got != 0 {
		t.Fatalf("%d applied, want 0: the one the server has was held already", got)
	}
}

func TestReason(t *testing.T) {
	if id, ok := ServerID(ReasonOf(42)); !ok || id != 42 {
		t.Fatalf("ServerID(ReasonOf(42)) = %d, %v", id, ok)
	}
	for _, r := range []string{"", "manual", "fleet decision #", "fleet decision #-1", "fleet decision #x"} {
		if _, ok := ServerID(r); ok {
			t.Errorf("ServerID(%q) ok", r)
		}
	}
}

// The applier leaves out this host's own bans streamed back, whether it
// looks them up one by one or, for a page, all at once.
func TestApplierSkipsOwnBans(t *testing.T) {
	for _, n := range []int{3, 40} {
		enf := newCountingEnforcer()
		_, svc := newService(t, enf, nil)
		ctx := context.Background()
		until := time.Now().Add(time.Hour)
		local := []model.Decision{{Value: netip.MustParsePrefix(addr(1)), Type: "ban", Origin: model.OriginLocal, Scenario: "crowdsecurity/ssh-bf", Until: until}}
		if err := svc.Add(ctx, local); err != nil {
			t.Fatal(err)
		}
		var ds []model.Decision
		for i := range n {
			scenario := "crowdsecurity/ssh-bf"
			if i == 2 {
				scenario = "crowdsecurity/http-probing"
			}
			ds = append(ds, model.Decision{Value: netip.MustParsePrefix(addr(1 + i%2)), Type: "ban", Origin: model.OriginFleet, Scenario: scenario, Reason: ReasonOf(int64(100 + i)), Until: until})
		}
		ids, err := (&ServiceApplier{Svc: svc}).Add(ctx, ds)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			own := i%2 == 0 && i != 2
			if (id == 0) != own {
				t.Errorf("n=%d: decision %d (%s %s) got local ID %d, own ban %v", n, i, ds[i].Value, ds[i].Scenario, id, own)
			}
		}
	}
}
