package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
	"github.com/moatsec/moat/internal/testutil"
)

const sshBF = "crowdsecurity/ssh-bf"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv *Server
	url string
	clk *clock
}

// newFixture serves a server over SQLite (or dsn) on 127.0.0.1.
func newFixture(t testing.TB, dsn string, mod func(*Config)) *fixture {
	t.Helper()
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "community.db")
	}
	clk := &clock{t: time.Now()}
	cfg := Config{DSN: dsn, EnrolmentToken: "enrol-secret", Now: clk.now, NetRate: -1, ReporterRate: -1, OnError: func(err error) { t.Log(err) }}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &fixture{srv: srv, url: "http://" + ln.Addr().String(), clk: clk}
}

// reporter is a raw CAPI client bound to a loopback source address, which
// is how the tests give reporters distinct networks: 127.0.0.x and
// 127.1.0.x are different /16s, no X-Forwarded-For involved.
type reporter struct {
	t         testing.TB
	base      string
	hc        *http.Client
	id        string
	token     string
	scenarios []string
}

func (r *reporter) login() {
	r.t.Helper()
	var lr wire.LoginResponse
	if code, body := r.do("POST", "/v3/watchers/login", wire.Credentials{MachineID: r.id, Password: "password-" + r.id, Scenarios: r.scenarios}, &lr); code != http.StatusOK {
		r.t.Fatalf("login %s: %d %s", r.id, code, body)
	}
	r.token = lr.Token
}

func (f *fixture) reporter(t testing.TB, id, from string, scenarios ...string) *reporter {
	t.Helper()
	src := &net.TCPAddr{IP: net.ParseIP(from)}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src}).DialContext}
	r := &reporter{t: t, base: f.url, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, id: id}
	if code, body := r.do("POST", "/v3/watchers", wire.Credentials{MachineID: id, Password: "password-" + id}, nil); code != http.StatusCreated {
		t.Fatalf("register %s: %d %s", id, code, body)
	}
	if len(scenarios) == 0 {
		scenarios = []string{sshBF}
	}
	r.scenarios = scenarios
	r.login()
	if code, body := r.do("POST", "/v3/watchers/enroll", wire.Enroll{AttachmentKey: "enrol-secret"}, nil); code != http.StatusOK {
		t.Fatalf("enroll %s: %d %s", id, code, body)
	}
	return r
}

func (r *reporter) do(method, path string, in, out any) (int, string) {
	r.t.Helper()
	var body bytes.Buffer
	if in != nil {
		json.NewEncoder(&body).Encode(in)
	}
	req, _ := http.NewRequest(method, r.base+path, &body)
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			r.t.Fatalf("%s %s: %v: %s", method, path, err, raw.String())
		}
	}
	return resp.StatusCode, raw.String()
}

func (r *reporter) report(addrs ...string) int {
	r.t.Helper()
	var sigs []wire.Signal
	now := time.Now()
	for _, a := range addrs {
		sigs = append(sigs, wire.Signal{Scenario: sshBF, Source: wire.Source{Scope: "Ip", Value: a, IP: a}, StartAt: now, StopAt: now, CreatedAt: now})
	}
	code, _ := r.do("POST", "/v3/signals", sigs, nil)
	return code
}

func (r *reporter) pull(startup bool) wire.StreamV3 {
	r.t.Helper()
	var s wire.StreamV3
	if code, body := r.do("GET", fmt.Sprintf("/v3/decisions/stream?startup=%v", startup), nil, &s); code != http.StatusOK {
		r.t.Fatalf("pull %s: %d %s", r.id, code, body)
	}
	return s
}

func values(s wire.StreamV3) map[string]bool {
	out := map[string]bool{}
	for _, g := range s.New {
		for _, d := range g.Decisions {
			out[d.Value] = true
		}
	}
	return out
}

func (f *fixture) evaluate(t testing.TB) EvalResult {
	t.Helper()
	res, err := f.srv.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestConsensusSQLite(t *testing.T) { testConsensus(t, "") }

func TestConsensusPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	testConsensus(t, pg.DSN())
}

// testConsensus: an address is listed only once three reporters from at
// least two /16s reported it; then pulled with its scenario, not by a
// reporter running other scenarios; and sent as deleted once it decays.
func testConsensus(t *testing.T, dsn string) {
	f := newFixture(t, dsn, func(c *Config) { c.TTL = time.Hour; c.Window = time.Hour })
	const attacker = "45.77.1.2"
	a := f.reporter(t, "a", "127.0.0.2")
	b := f.reporter(t, "b", "127.0.0.3")
	c := f.reporter(t, "c", "127.0.0.4")
	d := f.reporter(t, "d", "127.1.0.2")
	other := f.reporter(t, "other", "127.2.0.2", "crowdsecurity/http-probing")
	for i, r := range []*reporter{a, b, c} {
		if code := r.report(attacker); code != http.StatusOK {
			t.Fatalf("report: %d", code)
		}
		if res := f.evaluate(t); res.Listed != 0 {
			t.Fatalf("after %d reporters of one /16: listed %+v", i+1, res)
		}
	}
	ex, err := f.srv.Explain(context.Background(), netip.MustParseAddr(attacker))
	if err != nil || ex.Listed || ex.Reporters != 3 || ex.Networks != 1 {
		t.Fatalf("explain before: %+v %v", ex, err)
	}
	d.report(attacker)
	if res := f.evaluate(t); res.Listed != 1 {
		t.Fatalf("after a fourth reporter from a second /16: %+v", res)
	}
	ex, _ = f.srv.Explain(context.Background(), netip.MustParseAddr(attacker))
	if !ex.Listed || ex.Networks != 2 || ex.Reporters != 4 || ex.FirstSeen.IsZero() {
		t.Fatalf("explain after: %+v", ex)
	}
	f.clk.add(time.Second)
	if got := values(a.pull(true)); !got[attacker] {
		t.Fatalf("pull: %v, want %s", got, attacker)
	}
	if got := values(other.pull(true)); len(got) != 0 {
		t.Fatalf("pull by a reporter of other scenarios: %v", got)
	}
	f.clk.add(time.Second)
	if got := a.pull(false); len(values(got)) != 0 || len(got.Deleted) != 0 {
		t.Fatalf("delta with no change: %+v", got)
	}
	f.clk.add(2 * time.Hour)
	if res := f.evaluate(t); res.Expired != 1 {
		t.Fatalf("after the TTL: %+v", res)
	}
	a.login()
	b.login()
	got := a.pull(false)
	if len(got.Deleted) != 1 || len(got.Deleted[0].Decisions) != 1 || got.Deleted[0].Decisions[0] != attacker {
		t.Fatalf("delta after decay: %+v, want %s deleted", got, attacker)
	}
	if got := values(b.pull(true)); len(got) != 0 {
		t.Fatalf("startup pull after decay: %v", got)
	}
}

// One reporter, or many from one network, never lists anything however
// much it sends.
func TestPoisoningOneReporterListsNone(t *testing.T) {
	f := newFixture(t, "", nil)
	ctx := context.Background()
	f.reporter(t, "poison", "127.0.0.2")
	var reps []Report
	for i := range 100000 {
		reps = append(reps, Report{netip.AddrFrom4([4]byte{45, byte(i >> 16), byte(i >> 8), byte(i)}), sshBF})
	}
	for len(reps) > 0 {
		n := min(5000, len(reps))
		if err := f.srv.Ingest(ctx, "poison", netip.MustParseAddr("127.0.0.2"), reps[:n]); err != nil {
			t.Fatal(err)
		}
		reps = reps[n:]
	}
	if res := f.evaluate(t); res.Listed != 0 {
		t.Fatalf("one reporter's 100k addresses: %+v listed", res)
	}
	if st := f.srv.Stats(); st.Signals < 99000 {
		t.Fatalf("stats %+v: want the reports stored (and ignored by the rule)", st)
	}
}

// A reporter that reports a canary loses its weight: with it, three
// reporters from two networks are not enough.
func TestCanaryCollapsesTrust(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.Canaries = []netip.Prefix{netip.MustParsePrefix("81.2.69.0/24")} })
	const attacker = "45.77.9.9"
	a := f.reporter(t, "a", "127.0.0.2")
	b := f.reporter(t, "b", "127.1.0.2")
	liar := f.reporter(t, "liar", "127.2.0.2")
	liar.report("81.2.69.160") // the configured canary
	for _, r := range []*reporter{a, b, liar} {
		r.report(attacker)
	}
	if res := f.evaluate(t); res.Listed != 0 {
		t.Fatalf("with a canary reporter among three: %+v", res)
	}
	ex, _ := f.srv.Explain(context.Background(), netip.MustParseAddr(attacker))
	if ex.TrustedReporters != 2 || ex.Reporters != 3 {
		t.Fatalf("explain: %+v", ex)
	}
	if b, _ := json.Marshal(ex); bytes.Contains(b, []byte("liar")) || bytes.Contains(b, []byte("127.")) {
		t.Fatalf("explain names a reporter: %s", b)
	}
	c := f.reporter(t, "c", "127.3.0.2")
	c.report(attacker)
	if res := f.evaluate(t); res.Listed != 1 {
		t.Fatalf("with a third honest reporter: %+v", res)
	}
	// Reserved ranges are canaries too.
	c.report("10.1.2.3")
	if st := f.srv.Stats(); st.Canaries != 2 {
		t.Fatalf("stats %+v: want 2 canary reports", st)
	}
	ex, _ = f.srv.Explain(context.Background(), netip.MustParseAddr("10.1.2.3"))
	if ex.Reports != 0 || len(ex.Reasons) == 0 {
		t.Fatalf("explain canary: %+v", ex)
	}
}

func TestRateLimits(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.ReporterRate, c.ReporterBurst, c.NetRate, c.NetBurst = 0.001, 10, 0.001, 8 })
	a := f.reporter(t, "a", "127.0.0.2") // 3 requests from 127.0.0.0/24
	var ten []string
	for i := range 10 {
		ten = append(ten, fmt.Sprintf("45.77.0.%d", i+1))
	}
	if code := a.report(ten...); code != http.StatusOK {
		t.Fatalf("first 10 signals: %d", code)
	}
	if code := a.report("45.77.1.1"); code != http.StatusTooManyRequests {
		t.Fatalf("11th signal: %d, want 429", code)
	}
	// Requests per /24: 5 so far from 127.0.0.0/24, the burst is 8.
	for range 3 {
		a.pull(true)
	}
	if code, _ := a.do("GET", "/v3/decisions/stream", nil, nil); code != http.StatusTooManyRequests {
		t.Fatalf("9th request from one /24: %d, want 429", code)
	}
	b := f.reporter(t, "b", "127.0.1.2")
	b.pull(true)
}

func TestAdmissionNeedsEnrolment(t *testing.T) {
	f := newFixture(t, "", nil)
	r := &reporter{t: t, base: f.url, hc: http.DefaultClient, id: "x"}
	r.do("POST", "/v3/watchers", wire.Credentials{MachineID: "x", Password: "password-x"}, nil)
	if code, _ := r.do("POST", "/v3/watchers", wire.Credentials{MachineID: "x", Password: "password-y"}, nil); code != http.StatusConflict {
		t.Fatalf("second register: %d", code)
	}
	if code, _ := r.do("POST", "/v3/watchers/login", wire.Credentials{MachineID: "x", Password: "wrong-password"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("bad password: %d", code)
	}
	var lr wire.LoginResponse
	r.do("POST", "/v3/watchers/login", wire.Credentials{MachineID: "x", Password: "password-x", Scenarios: []string{sshBF}}, &lr)
	r.token = lr.Token
	if code := r.report("45.77.1.1"); code != http.StatusForbidden {
		t.Fatalf("signals before enrolment: %d", code)
	}
	if code, _ := r.do("POST", "/v3/watchers/enroll", wire.Enroll{AttachmentKey: "guess"}, nil); code != http.StatusForbidden {
		t.Fatalf("wrong token: %d", code)
	}
	r.do("POST", "/v3/watchers/enroll", wire.Enroll{AttachmentKey: "enrol-secret"}, nil)
	if code := r.report("45.77.1.1"); code != http.StatusOK {
		t.Fatalf("signals after enrolment: %d", code)
	}
	// Unenrolled registrations are bounded.
	f.srv.cfg.MaxPending = 1
	r.do("POST", "/v3/watchers", wire.Credentials{MachineID: "p1", Password: "password-p1"}, nil)
	if code, _ := r.do("POST", "/v3/watchers", wire.Credentials{MachineID: "p2", Password: "password-p2"}, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("registration past the pending bound: %d", code)
	}
}

// BenchmarkIngest measures signals stored per second, in batches of 500
// from 100 reporters, on SQLite.
func BenchmarkIngest(b *testing.B) {
	f := newFixture(b, "", nil)
	ctx := context.Background()
	for i := range 100 {
		f.srv.db.Exec(`INSERT INTO reporters (id, password_hash, enrolled, created_at) VALUES (?, 'x', 1, 0)`, fmt.Sprint("r", i))
	}
	batch := make([]Report, 500)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range batch {
			x := n*500 + i
			batch[i] = Report{netip.AddrFrom4([4]byte{45, byte(x >> 16), byte(x >> 8), byte(x)}), sshBF}
		}
		if err := f.srv.Ingest(ctx, fmt.Sprint("r", n%100), netip.MustParseAddr("127.0.0.2"), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "signals/s")
}

// A pull returns at most MaxList addresses, the best supported first.
func TestPullCapped(t *testing.T) {
	f := newFixture(t, "", func(c *Config) { c.MaxList = 2 })
	ctx := context.Background()
	addrs := []string{"45.77.60.1", "45.77.60.2", "45.77.60.3"}
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.1.0.2", "127.2.0.2"} {
		id := fmt.Sprint("r", i)
		f.srv.db.Exec(`INSERT INTO reporters (id, password_hash, enrolled, created_at) VALUES (?, 'x', 1, ?)`, id, time.Now().Unix())
		var reps []Report
		for j, a := range addrs {
			// The fourth reporter backs only 45.77.60.3, which then
			// scores highest.
			if i < 3 || j == 2 {
				reps = append(reps, Report{netip.MustParseAddr(a), sshBF})
			}
		}
		if err := f.srv.Ingest(ctx, id, netip.MustParseAddr(from), reps); err != nil {
			t.Fatal(err)
		}
	}
	if res := f.evaluate(t); res.Listed != 3 {
		t.Fatalf("%+v", res)
	}
	added, _, err := f.srv.Pull(ctx, "r0", true)
	if err != nil || len(added) != 2 || added[0].Addr != "45.77.60.3" {
		t.Fatalf("pull: %+v %v", added, err)
	}
}

// The v2 stream CrowdSec 1.4 reads: flat decisions, origin CAPI.
func TestStreamV2Shape(t *testing.T) {
	f := newFixture(t, "", nil)
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.1.0.2"} {
		f.reporter(t, fmt.Sprint("v", i), from).report("45.77.70.1")
	}
	f.evaluate(t)
	r := f.reporter(t, "puller", "127.3.0.2")
	var s wire.StreamV2
	if code, body := r.do("GET", "/v2/decisions/stream?startup=true", nil, &s); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if len(s.New) != 1 || s.Deleted == nil {
		t.Fatalf("%+v", s)
	}
	d := s.New[0]
	if d.Value != "45.77.70.1" || d.Origin != "CAPI" || d.Type != "ban" || d.Scope != "Ip" || d.Scenario != sshBF {
		t.Fatalf("%+v", d)
	}
	if dur, err := time.ParseDuration(d.Duration); err != nil || dur < 23*time.Hour {
		t.Fatalf("duration %q: %v", d.Duration, err)
	}
}
