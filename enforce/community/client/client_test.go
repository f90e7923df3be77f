package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/server"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/packaging"
)

const (
	sshBF = "crowdsecurity/ssh-bf"
	token = "enrolment-token-for-tests"
)

// captured is one request the server received.
type captured struct {
	from, method, path string
	body               []byte
}

// community is a server on 127.0.0.1 that records every request.
type community struct {
	srv *server.Server
	url string

	mu   sync.Mutex
	reqs []captured
}

func startServer(t testing.TB, dsn string) *community {
	t.Helper()
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "community.db")
	}
	srv, err := server.Open(context.Background(), server.Config{DSN: dsn, EnrolmentToken: token, OnError: func(err error) { t.Log(err) }})
	if err != nil {
		t.Fatal(err)
	}
	c := &community{srv: srv}
	h := srv.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		c.mu.Lock()
		c.reqs = append(c.reqs, captured{host, r.Method, r.URL.Path, b})
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(w, r)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	c.url = "http://" + ln.Addr().String()
	return c
}

func (c *community) requests() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// host is one moat daemon's decision service and community client, its
// HTTP client bound to a loopback source address: 127.0.0.x and 127.1.0.x
// are distinct /16s to the server, which trusts no forwarding header.
type host struct {
	svc *decision.Service
	st  *store.Store
	cl  *Client
}

func newHost(t testing.TB, c *community, from string, share, pull bool) *host {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := decision.New(st, ps, nil, netip.MustParsePrefix("81.2.69.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	creds, err := Register(context.Background(), hc, c.url, token, []byte("machine-id-"+from), dir)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{Credentials: creds, HTTP: hc, Decisions: svc, Share: share, Pull: pull, StateDir: dir,
		Scenarios: func() []string { return []string{sshBF} }})
	if err != nil {
		t.Fatal(err)
	}
	return &host{svc: svc, st: st, cl: cl}
}

func localBan(addr string) (model.Alert, []model.Decision) {
	p := netip.PrefixFrom(netip.MustParseAddr(addr), netip.MustParseAddr(addr).BitLen())
	now := time.Now()
	a := model.Alert{Scenario: sshBF, ScenarioHash: "abc123", ScenarioVersion: "0.3", Scope: model.ScopeIP, Value: addr, Source: p,
		Start: now.Add(-time.Minute), Stop: now, EventsCount: 6, Message: "user root from " + addr,
		Meta: map[string]string{"target_user": "root", "log_type": "ssh_failed-auth"}, Events: []map[string]string{{"source_ip": addr, "target_user": "root"}}}
	return a, []model.Decision{{Value: p, Type: "ban", Origin: model.OriginLocal, Scenario: sshBF, Until: now.Add(4 * time.Hour)}}
}

func (h *host) flush(t *testing.T) {
	t.Helper()
	if err := h.cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (h *host) community(t *testing.T) []string {
	t.Helper()
	recs, err := h.st.ListDecisions(context.Background(), store.Filter{Origin: string(model.OriginCommunity)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Decision.Value.Addr().String())
	}
	return out
}

func TestFiveHostsSQLite(t *testing.T) { testFiveHosts(t, "") }

func TestFiveHostsPostgres(t *testing.T) { testFiveHosts(t, testutil.StartPostgres(t).DSN()) }

// testFiveHosts: five hosts see one attacker; four share, so the server
// lists it once three reporters from two networks did; the hosts that
// pull then hold it as a community decision; the one not sharing sent no
// signal; and every signal holds only the allowed fields.
func testFiveHosts(t *testing.T, dsn string) {
	c := startServer(t, dsn)
	ctx := context.Background()
	const attacker = "45.77.3.4"
	hosts := []*host{
		newHost(t, c, "127.0.0.11", true, false),
		newHost(t, c, "127.0.0.12", true, false),
		newHost(t, c, "127.0.0.13", true, true),
		newHost(t, c, "127.1.0.14", true, true),
		newHost(t, c, "127.1.0.15", false, true),
	}
	for i, h := range hosts {
		a, ds := localBan(attacker)
		h.cl.Share(a, ds)
		h.flush(t)
		res, err := c.srv.Evaluate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Hosts 0-2 share from 127.0/16: one network. Host 3 adds 127.1/16.
		if want := i == 3; (res.Listed == 1) != want {
			t.Fatalf("after host %d shared: %+v, want listed %v", i, res, want)
		}
	}
	for i, h := range hosts {
		if h.cl.cfg.Pull {
			if err := h.cl.Pull(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.community(t); slices.Contains(got, attacker) != h.cl.cfg.Pull {
			t.Fatalf("host %d (pull %v) community decisions %v", i, h.cl.cfg.Pull, got)
		}
	}
	if st := hosts[4].cl.Stats(); st.Queued != 0 || st.Sent != 0 {
		t.Fatalf("host with share off: %+v", st)
	}
	// Run with share off and pull off sends nothing at all.
	idle, err := New(Config{Credentials: hosts[4].cl.cfg.Credentials, HTTP: hosts[4].cl.cfg.HTTP, Decisions: hosts[4].svc})
	if err != nil {
		t.Fatal(err)
	}
	before := len(c.requests())
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	idle.Share(localBan(attacker))
	idle.Run(rctx)
	cancel()
	if n := len(c.requests()); n != before {
		t.Fatalf("a client with share and pull off made %d requests", n-before)
	}
	reqs := c.requests()
	for _, r := range reqs {
		if r.from == "127.1.0.15" && strings.HasSuffix(r.path, "/signals") {
			t.Fatalf("host with share off sent %s %s: %s", r.method, r.path, r.body)
		}
	}
	checkSignalFields(t, reqs, 4)
}

// checkSignalFields decodes every signal the server received into maps
// and compares the key sets with the allowed ones.
func checkSignalFields(t *testing.T, reqs []captured, want int) {
	t.Helper()
	allowed := []string{"created_at", "scenario", "scenario_hash", "scenario_version", "source", "start_at", "stop_at"}
	n := 0
	for _, r := range reqs {
		if !strings.HasSuffix(r.path, "/signals") {
			continue
		}
		var sigs []map[string]any
		if err := json.Unmarshal(r.body, &sigs); err != nil {
			t.Fatal(err)
		}
		for _, s := range sigs {
			n++
			if got := keys(s); !slices.Equal(got, allowed) {
				t.Fatalf("signal keys %v, want %v", got, allowed)
			}
			src, _ := s["source"].(map[string]any)
			if got := keys(src); !slices.Equal(got, []string{"ip", "scope", "value"}) {
				t.Fatalf("source keys %v", got)
			}
			if strings.Contains(string(r.body), "root") {
				t.Fatalf("a signal carries a username: %s", r.body)
			}
		}
	}
	if n != want {
		t.Fatalf("%d signals received, want %d", n, want)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Only local bans of public, non-allowlisted single addresses are shared,
// once per (address, scenario) in the dedup window.
func TestShareFilters(t *testing.T) {
	c := startServer(t, "")
	h := newHost(t, c, "127.0.0.21", true, false)
	share := func(addr string, mod func(*model.Decision)) {
		a, ds := localBan(addr)
		if mod != nil {
			mod(&ds[0])
		}
		h.cl.Share(a, ds)
	}
	share("45.77.5.5", nil)
	share("45.77.5.5", nil) // duplicate
	share("10.0.0.1", nil)
	share("192.168.1.1", nil)
	share("81.2.69.160", nil) // allowlisted
	share("45.77.5.6", func(d *model.Decision) { d.Origin = model.OriginCLI })
	share("45.77.5.7", func(d *model.Decision) { d.Origin = model.OriginFleet })
	share("45.77.5.8", func(d *model.Decision) { d.Origin = model.OriginCommunity })
	share("45.77.5.9", func(d *model.Decision) { d.Simulated = true })
	share("45.77.5.10", func(d *model.Decision) { d.Value = netip.MustParsePrefix("45.77.6.0/24") }) // does not cover the source
	// A range source is not shared; a ban widened to a /64 still shares
	// the alert's single address.
	a, ds := localBan("45.77.5.11")
	a.Source = netip.MustParsePrefix("45.77.5.0/24")
	h.cl.Share(a, ds)
	a, ds = localBan("2a01:4f8::7")
	ds[0].Value = netip.MustParsePrefix("2a01:4f8::/64")
	h.cl.Share(a, ds)
	if st := h.cl.Stats(); st.Queued != 2 || st.Skipped != 10 {
		t.Fatalf("stats %+v: want 2 queued, 10 skipped", st)
	}
	h.flush(t)
	checkSignalFields(t, c.requests(), 2)
}

// The queue survives a restart: persisted on stop, loaded on start.
func TestQueuePersisted(t *testing.T) {
	dir := t.TempDir()
	creds := Credentials{Server: "http://127.0.0.1:1", MachineID: "m", Password: "p"}
	mk := func() *Client {
		cl, err := New(Config{Credentials: creds, HTTP: &http.Client{Timeout: time.Second}, Share: true, StateDir: dir, PushInterval: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, QueueSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	cl := mk()
	for i := range 5 {
		a, ds := localBan(fmt.Sprintf("45.77.6.%d", i+1))
		cl.Share(a, ds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := cl.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := cl.Stats(); st.Dropped != 2 || st.Errors == 0 {
		t.Fatalf("stats %+v: want 2 dropped (queue of 3) and failed sends", st)
	}
	if n, err := Queued(dir); err != nil || n != 3 {
		t.Fatalf("Queued: %d %v", n, err)
	}
	again := mk()
	if st := again.Stats(); st.Queued != 3 || again.queue[0].Source.Value != "45.77.6.3" {
		t.Fatalf("after restart: %+v %v", st, again.queue)
	}
}

func TestPseudonym(t *testing.T) {
	a := Pseudonym([]byte("0123456789abcdef\n"), "https://a.example")
	if a != Pseudonym([]byte("0123456789abcdef"), "https://a.example") || a == Pseudonym([]byte("0123456789abcdef"), "https://b.example") || strings.Contains(a, "0123") || len(a) != 48 {
		t.Fatalf("pseudonym %q", a)
	}
}
