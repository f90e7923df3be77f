package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

type fakeEnforcer struct {
	mu   sync.Mutex
	held map[int64]model.Decision
}

func (f *fakeEnforcer) Apply(_ context.Context, add, remove []model.Decision) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range add {
		f.held[d.ID] = d
	}
	for _, d := range remove {
		delete(f.held, d.ID)
	}
	return nil
}

type fixture struct {
	svc   *decision.Service
	st    *store.Store
	enf   *fakeEnforcer
	srv   *Server
	admin *httptest.Server
	lapi  *httptest.Server
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	enf := &fakeEnforcer{held: map[int64]model.Decision{}}
	f := newFixtureOn(t, enf)
	f.enf = enf
	return f
}

// newFixtureOn is newFixture with the decision service enforcing through enf.
func newFixtureOn(t testing.TB, enf decision.Enforcer) *fixture {
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
	svc, err := decision.New(st, prof, enf, netip.MustParsePrefix("198.18.200.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(svc, st, func(context.Context) (Status, error) {
		return Status{Version: "test", Parsers: []string{"crowdsecurity/sshd-logs"}, Backends: []Backend{{Name: "nftables", Entries: 3}}}, nil
	})
	f := &fixture{svc: svc, st: st, srv: srv, admin: httptest.NewServer(srv.AdminHandler()), lapi: httptest.NewServer(srv.BouncerHandler())}
	t.Cleanup(f.admin.Close)
	t.Cleanup(f.lapi.Close)
	return f
}

func (f *fixture) bouncerKey(t testing.TB, name string) string {
	t.Helper()
	key, err := f.st.AddBouncer(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (f *fixture) add(t testing.TB, value string, dur time.Duration, scenario string) model.Decision {
	t.Helper()
	p, err := model.ParseValue(value)
	if err != nil {
		t.Fatal(err)
	}
	ds := []model.Decision{{Value: p, Type: "ban", Origin: model.OriginLocal, Scenario: scenario, Until: time.Now().Add(dur)}}
	if err := f.svc.Add(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return ds[0]
}

type streamResp struct {
	New     []lapiDecision `json:"new"`
	Deleted []lapiDecision `json:"deleted"`
}

func get(t testing.TB, base, path, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func pull(t testing.TB, base, key string, startup bool, extra string) streamResp {
	t.Helper()
	path := "/v1/decisions/stream?startup=" + fmt.Sprint(startup) + extra
	code, body := get(t, base, path, key)
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", path, code, body)
	}
	var r streamResp
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %v: %s", path, err, body)
	}
	if r.New == nil || r.Deleted == nil {
		t.Fatalf("%s: new and deleted must be arrays, got %s", path, body)
	}
	return r
}

func values(ds []lapiDecision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Value)
	}
	return out
}

func TestStreamProtocol(t *testing.T) {
	f := newFixture(t)
	a := f.add(t, "198.18.0.1", 4*time.Hour, "crowdsecurity/ssh-bf")
	f.add(t, "198.18.1.0/24", time.Hour, "crowdsecurity/http-probing")
	f.add(t, "2001:db8::5", time.Hour, "crowdsecurity/ssh-bf")
	k1, k2 := f.bouncerKey(t, "fw1"), f.bouncerKey(t, "fw2")

	r := pull(t, f.lapi.URL, k1, true, "")
	if got := values(r.New); strings.Join(got, " ") != "198.18.0.1 198.18.1.0/24 2001:db8::5" || len(r.Deleted) != 0 {
		t.Fatalf("startup: %+v", r)
	}
	d := r.New[0]
	dur, err := time.ParseDuration(d.Duration)
	if err != nil || dur <= 3*time.Hour+59*time.Minute || dur > 4*time.Hour {
		t.Errorf("duration %q", d.Duration)
	}
	if d.ID != a.ID || d.Origin != "crowdsec" || d.Scope != "Ip" || d.Type != "ban" || d.Scenario != "crowdsecurity/ssh-bf" {
		t.Errorf("decision %+v", d)
	}
	if until, err := time.Parse(time.RFC3339, d.Until); err != nil || until.Sub(a.Until).Abs() > time.Second {
		t.Errorf("until %q vs %s", d.Until, a.Until)
	}
	if r.New[1].Scope != "Range" {
		t.Errorf("range scope %q", r.New[1].Scope)
	}

	// Nothing changed: an empty delta.
	r = pull(t, f.lapi.URL, k1, false, "")
	if len(r.New)+len(r.Deleted) != 0 {
		t.Fatalf("idle delta: %+v", r)
	}

	// One new, one deleted.
	b := f.add(t, "198.18.0.2", time.Hour, "crowdsecurity/ssh-bf")
	if _, err := f.svc.Delete(context.Background(), store.Filter{Value: "198.18.0.1"}); err != nil {
		t.Fatal(err)
	}
	r = pull(t, f.lapi.URL, k1, false, "")
	if len(r.New) != 1 || r.New[0].ID != b.ID || len(r.Deleted) != 1 || r.Deleted[0].ID != a.ID {
		t.Fatalf("delta: %+v", r)
	}
	r = pull(t, f.lapi.URL, k1, false, "")
	if len(r.New)+len(r.Deleted) != 0 {
		t.Fatalf("delta repeated: %+v", r)
	}

	// fw2 never pulled: its first delta is the whole active set, and fw1's
	// pulls did not consume it.
	r = pull(t, f.lapi.URL, k2, false, "")
	if got := strings.Join(values(r.New), " "); got != "198.18.1.0/24 2001:db8::5 198.18.0.2" || len(r.Deleted) != 0 {
		t.Fatalf("fw2 first delta: %s %+v", got, r.Deleted)
	}

	// Expiry shows up as a deletion.
	c := f.add(t, "198.18.0.3", 300*time.Millisecond, "crowdsecurity/ssh-bf")
	r = pull(t, f.lapi.URL, k1, false, "")
	if len(r.New) != 1 || r.New[0].ID != c.ID {
		t.Fatalf("short one: %+v", r)
	}
	time.Sleep(400 * time.Millisecond)
	r = pull(t, f.lapi.URL, k1, false, "")
	if len(r.New) != 0 || len(r.Deleted) != 1 || r.Deleted[0].ID != c.ID {
		t.Fatalf("expired: %+v", r)
	}
	if dur, _ := time.ParseDuration(r.Deleted[0].Duration); dur > 0 {
		t.Errorf("expired decision duration %q", r.Deleted[0].Duration)
	}

	// Filters.
	r = pull(t, f.lapi.URL, k1, true, "&scopes=range")
	if strings.Join(values(r.New), " ") != "198.18.1.0/24" {
		t.Errorf("scopes=range: %v", values(r.New))
	}
	r = pull(t, f.lapi.URL, k1, true, "&scenarios_containing=ssh&scenarios_not_containing=http")
	if strings.Join(values(r.New), " ") != "2001:db8::5 198.18.0.2" {
		t.Errorf("scenarios: %v", values(r.New))
	}
	r = pull(t, f.lapi.URL, k1, true, "&origins=cscli")
	if len(r.New) != 0 {
		t.Errorf("origins=cscli: %v", values(r.New))
	}
	r = pull(t, f.lapi.URL, k1, true, "&origins=crowdsec,cscli")
	if len(r.New) != 3 {
		t.Errorf("origins=crowdsec,cscli: %v", values(r.New))
	}

	// Simulated decisions are stored but not served unless asked for.
	sim := []model.Decision{{Value: netip.MustParsePrefix("198.18.0.66/32"), Type: "ban", Origin: model.OriginLocal, Scenario: "sim", Until: time.Now().Add(time.Hour), Simulated: true}}
	if err := f.svc.Add(context.Background(), sim); err != nil {
		t.Fatal(err)
	}
	if r = pull(t, f.lapi.URL, k1, false, ""); len(r.New) != 0 {
		t.Errorf("simulated decision streamed: %v", values(r.New))
	}
	if r = pull(t, f.lapi.URL, k1, true, "&simulated=true&scenarios_containing=sim"); len(r.New) != 1 || !r.New[0].Simulated {
		t.Errorf("simulated=true: %+v", r.New)
	}
	if code, body := get(t, f.lapi.URL, "/v1/decisions?ip=198.18.0.66", k1); code != 200 || strings.TrimSpace(string(body)) != "null" {
		t.Errorf("simulated decision served by /v1/decisions: %s", body)
	}

	// HEAD answers without a body and without consuming the delta.
	f.add(t, "198.18.0.4", time.Hour, "x")
	req, _ := http.NewRequest(http.MethodHead, f.lapi.URL+"/v1/decisions/stream", nil)
	req.Header.Set("X-Api-Key", k1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	resp.Body.Close()
	r = pull(t, f.lapi.URL, k1, false, "")
	if strings.Join(values(r.New), " ") != "198.18.0.4" {
		t.Errorf("after HEAD: %v", values(r.New))
	}

	bs, _ := f.st.ListBouncers(context.Background())
	if len(bs) != 2 || bs[0].LastSeen.IsZero() || bs[0].LastIP != "127.0.0.1" || !strings.HasPrefix(bs[0].UserAgent, "Go-http-client") {
		t.Errorf("bouncer bookkeeping: %+v", bs)
	}
}

func TestGetDecisions(t *testing.T) {
	f := newFixture(t)
	f.add(t, "198.18.1.0/24", time.Hour, "scan")
	single := f.add(t, "198.18.2.2", time.Hour, "ssh")
	f.add(t, "2001:db8:1::/48", time.Hour, "scan")
	key := f.bouncerKey(t, "nginx")
	cases := []struct {
		query string
		want  []string
	}{
		{"?ip=198.18.1.77", []string{"198.18.1.0/24"}},
		{"?ip=198.18.2.2", []string{"198.18.2.2"}},
		{"?ip=::ffff:198.18.2.2", []string{"198.18.2.2"}},
		{"?ip=2001:db8:1:2::3", []string{"2001:db8:1::/48"}},
		{"?ip=198.18.3.3", nil},
		{"?range=198.18.1.128/25", []string{"198.18.1.0/24"}},
		{"?scope=ip", []string{"198.18.2.2"}},
		{"?scope=Range&type=ban", []string{"2001:db8:1::/48", "198.18.1.0/24"}},
		{"?value=198.18.2.2", []string{"198.18.2.2"}},
		{"?type=captcha", nil},
	}
	for _, c := range cases {
		code, body := get(t, f.lapi.URL, "/v1/decisions"+c.query, key)
		if code != 200 {
			t.Errorf("%s: %d %s", c.query, code, body)
			continue
		}
		if c.want == nil {
			if strings.TrimSpace(string(body)) != "null" {
				t.Errorf("%s: %s, want null", c.query, body)
			}
			continue
		}
		var ds []lapiDecision
		if err := json.Unmarshal(body, &ds); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(values(ds), " "); got != strings.Join(c.want, " ") {
			t.Errorf("%s: %s, want %v", c.query, got, c.want)
		}
	}
	code, body := get(t, f.lapi.URL, "/v1/decisions?ip=198.18.2.2", key)
	var ds []lapiDecision
	json.Unmarshal(body, &ds)
	if code != 200 || len(ds) != 1 || ds[0].ID != single.ID {
		t.Errorf("by ip: %s", body)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	key := f.bouncerKey(t, "fw")
	for _, path := range []string{"/v1/decisions/stream?startup=true", "/v1/decisions?ip=198.18.0.1"} {
		for _, k := range []string{"", "wrong", key + "x", strings.Repeat("a", 10000)} {
			code, body := get(t, f.lapi.URL, path, k)
			var eb errorBody
			if code != http.StatusUnauthorized || json.Unmarshal(body, &eb) != nil || eb.Message == "" {
				t.Errorf("%s key %.10q: %d %s", path, k, code, body)
			}
		}
		if code, body := get(t, f.lapi.URL, path, key); code != 200 {
			t.Errorf("%s good key: %d %s", path, code, body)
		}
	}
	if err := f.st.DeleteBouncer(context.Background(), "fw"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, f.lapi.URL, "/v1/decisions/stream?startup=true", key); code != http.StatusUnauthorized {
		t.Errorf("deleted bouncer's key: %d", code)
	}
	// The TCP side serves no admin endpoint, with or without a key.
	key2 := f.bouncerKey(t, "fw2")
	for _, path := range []string{"/v1/admin/decisions", "/v1/admin/bouncers", "/v1/admin/status"} {
		if code, _ := get(t, f.lapi.URL, path, key2); code != http.StatusNotFound {
			t.Errorf("TCP %s: %d", path, code)
		}
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	key := f.bouncerKey(t, "fw")
	f.add(t, "198.18.7.7", time.Hour, "x")
	huge := `{"decisions":[` + strings.Repeat(`{"value":"198.18.0.1","duration":"1h"},`, 40000) + `{"value":"198.18.0.1","duration":"1h"}]}`
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/admin/decisions", `{`, 400},
		{"POST", "/v1/admin/decisions", `[]`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1","duration":"1h"}]}{}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1","duration":"1h","bogus":1}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.256","duration":"1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.0/33","duration":"1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"fe80::1%eth0","duration":"1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"example.com","duration":"1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1","duration":"-1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1","duration":"1h","type":"ban; drop"}]}`, 400},
		// One good, one bad: nothing is stored.
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.0.1","duration":"1h"},{"value":"x","duration":"1h"}]}`, 400},
		{"POST", "/v1/admin/decisions", `{"decisions":[{"value":"198.18.200.1","duration":"1h"}]}`, 409},
		{"POST", "/v1/admin/decisions", huge, 413},
		{"DELETE", "/v1/admin/decisions", ``, 400},
		{"DELETE", "/v1/admin/decisions?ip=198.18.0.1/24", ``, 400},
		{"DELETE", "/v1/admin/decisions?all=true&ip=198.18.7.7", ``, 400},
		{"DELETE", "/v1/admin/decisions?id=-4", ``, 400},
		{"GET", "/v1/admin/decisions?range=198.18.0.0/99", ``, 400},
		{"GET", "/v1/admin/decisions?limit=x", ``, 400},
		{"GET", "/v1/admin/alerts/abc", ``, 400},
		{"GET", "/v1/admin/alerts/99", ``, 404},
		{"GET", "/v1/admin/alerts?since=yesterday", ``, 400},
		{"POST", "/v1/admin/bouncers", `{"name":""}`, 400},
		{"POST", "/v1/admin/bouncers", `{"name":"a b"}`, 400},
		{"POST", "/v1/admin/bouncers", `{"name":"fw"}`, 409},
		{"DELETE", "/v1/admin/bouncers/nobody", ``, 404},
		{"POST", "/v1/admin/allowlist", `{"value":"not-an-ip"}`, 400},
		{"POST", "/v1/admin/allowlist", `{"value":"198.18.0.1","reason":` + strings.Repeat(`"`, 1) + strings.Repeat("r", 2000) + `"}`, 400},
		{"DELETE", "/v1/admin/allowlist?value=198.18.200.0/24", ``, 409},
		{"DELETE", "/v1/admin/allowlist?value=", ``, 400},
		{"PUT", "/v1/admin/decisions", `{}`, 404},
		{"GET", "/v1/nothing", ``, 404},
	}
	before, _ := f.st.Counts(context.Background())
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, f.admin.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s %.60s: %d %s, want %d", c.method, c.path, c.body, resp.StatusCode, body, c.want)
		}
		{
			var eb errorBody
			if json.Unmarshal(body, &eb) != nil || eb.Message == "" {
				t.Errorf("%s %s: error body %q is not {\"message\": ...}", c.method, c.path, body)
			}
		}
	}
	after, _ := f.st.Counts(context.Background())
	after.FileBytes, before.FileBytes = 0, 0
	if after != before {
		t.Errorf("bad requests changed the store: %+v -> %+v", before, after)
	}
	if len(f.enf.held) != 1 {
		t.Errorf("bad requests reached the enforcer: %v", f.enf.held)
	}
	// Bouncer endpoints: bad filters with a good key are 400, not 500.
	for _, q := range []string{"?ip=nope", "?range=1.2.3.4/40", "?ip=198.18.0.1%25eth0"} {
		if code, body := get(t, f.lapi.URL, "/v1/decisions"+q, key); code != 400 {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
}

func FuzzDecodeAddDecisions(f *testing.F) {
	for _, s := range []string{
		`{"decisions":[{"value":"198.18.0.1","duration":"4h","reason":"manual"}]}`,
		`{"decisions":[{"value":"2001:db8::/64","duration":"1h","type":"captcha"}]}`,
		`{"decisions":[{"value":"198.18.0.0/15","duration":"10m","scenario":"x","simulated":true}]}`,
		`{"decisions":null}`, `[]`, `{`, `{"decisions":[{"value":"::ffff:198.18.0.1","duration":"1h"}]}`,
		`{"decisions":[{"scope":"Country","value":"cn","duration":"24h"}]}`,
		`{"decisions":[{"scope":"as","value":"AS4134","duration":"forever"}]}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := DecodeAddDecisions(bytes.NewReader(data), model.OriginAPI, now)
		if err != nil {
			if ds != nil {
				t.Fatalf("error %v with decisions %v", err, ds)
			}
			return
		}
		if len(ds) == 0 || len(ds) > MaxDecisionsPerRequest {
			t.Fatalf("accepted %d decisions", len(ds))
		}
		for _, d := range ds {
			// Forever is no expiry.
			if !d.Until.IsZero() && (!d.Until.After(now) || d.Until.Sub(now) > MaxDuration) || !validWord(d.Type, 64) || d.Origin != model.OriginAPI {
				t.Fatalf("accepted %+v", d)
			}
			if !d.Geo.IsZero() {
				// A country or AS, canonical, and nothing else.
				p, g, err := model.ParseDecisionValue(d.ValueString())
				if d.Value.IsValid() || len(d.Ports) > 0 || err != nil || p.IsValid() || g != d.Geo {
					t.Fatalf("accepted %+v (read back as %v %v %v)", d, p, g, err)
				}
				continue
			}
			if !d.Value.IsValid() || d.Value != d.Value.Masked() || d.Value.Addr().Is4In6() || d.Value.Addr().Zone() != "" {
				t.Fatalf("accepted value %v", d.Value)
			}
			// What is accepted must round-trip through the store's text form.
			p, err := model.ParseValue(model.ValueString(d.Value))
			if err != nil || p != d.Value {
				t.Fatalf("value %v does not round-trip: %v %v", d.Value, p, err)
			}
		}
	})
}

func TestClientOverSocket(t *testing.T) {
	f := newFixture(t)
	dir, err := os.MkdirTemp("/tmp", "moat-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "run", "moat.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- f.srv.Serve(ctx, ln, f.srv.AdminHandler()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if st, _ := os.Stat(sock); st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v", st.Mode())
	}
	if st, _ := os.Stat(filepath.Dir(sock)); st.Mode().Perm() != 0o750 {
		t.Errorf("socket dir mode %v", st.Mode())
	}
	if _, err := ListenUnix(sock); err == nil {
		t.Error("second listener on a live socket")
	}
	notSock := filepath.Join(dir, "file")
	os.WriteFile(notSock, []byte("keep me"), 0o600)
	if _, err := ListenUnix(notSock); err == nil {
		t.Error("listened over a regular file")
	}
	if data, _ := os.ReadFile(notSock); string(data) != "keep me" {
		t.Error("regular file at the socket path was replaced")
	}
	c := NewClient(sock)
	added, err := c.AddDecisions(ctx, []NewDecision{{Value: "198.18.4.4", Duration: "4h", Reason: "test"}, {Value: "198.18.5.0/24", Duration: "1h"}}, true)
	if err != nil || len(added) != 2 || added[0].Origin != "cli" || added[0].ID == 0 {
		t.Fatalf("add: %+v, %v", added, err)
	}
	ds, err := c.Decisions(ctx, url.Values{"ip": {"198.18.5.9"}})
	if err != nil || len(ds) != 1 || ds[0].Value != "198.18.5.0/24" {
		t.Fatalf("list: %+v, %v", ds, err)
	}
	del, err := c.DeleteDecisions(ctx, url.Values{"value": {"198.18.4.4"}})
	if err != nil || del.Deleted != 1 {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if _, err := c.DeleteDecisions(ctx, nil); !isStatus(err, 400) {
		t.Fatalf("delete without filter: %v", err)
	}
	nb, err := c.AddBouncer(ctx, "fw")
	if err != nil || len(nb.Key) != 64 {
		t.Fatalf("bouncer: %+v, %v", nb, err)
	}
	if code, _ := get(t, f.lapi.URL, "/v1/decisions", nb.Key); code != 200 {
		t.Errorf("new key refused: %d", code)
	}
	bs, err := c.Bouncers(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "fw" {
		t.Fatalf("bouncers: %+v, %v", bs, err)
	}
	ar, err := c.AddAllow(ctx, AllowRequest{Value: "198.18.5.7", Reason: "office"})
	if err != nil || len(ar.Lifted) != 1 || ar.Lifted[0].Value != "198.18.5.0/24" {
		t.Fatalf("allow: %+v, %v", ar, err)
	}
	al, err := c.Allowlist(ctx)
	if err != nil || len(al) != 2 {
		t.Fatalf("allowlist: %+v, %v", al, err)
	}
	if err := c.DeleteAllow(ctx, "198.18.5.7"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteBouncer(ctx, "fw"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteBouncer(ctx, "fw"); !isStatus(err, 404) {
		t.Fatalf("delete again: %v", err)
	}
	if _, err := f.svc.HandleAlert(ctx, model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: "Ip", Value: "198.18.6.6", Source: netip.MustParsePrefix("198.18.6.6/32"), Remediation: true, Meta: map[string]string{"service": "ssh"}}); err != nil {
		t.Fatal(err)
	}
	alerts, err := c.Alerts(ctx, nil)
	if err != nil || len(alerts) != 1 || alerts[0].Meta != nil {
		t.Fatalf("alerts: %+v, %v", alerts, err)
	}
	a, err := c.Alert(ctx, alerts[0].ID)
	if err != nil || a.Meta["service"] != "ssh" || len(a.Decisions) != 1 {
		t.Fatalf("inspect: %+v, %v", a, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Version != "test" || st.Store.ActiveDecisions != 1 || st.Store.Alerts != 1 || st.Service.Alerts != 1 || len(st.Backends) != 1 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	// A client for a socket nobody serves says so.
	if _, err := NewClient(filepath.Join(dir, "none.sock")).Status(ctx); !errors.Is(err, ErrDaemonDown) {
		t.Errorf("no daemon: %v", err)
	}
}

func isStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}

// TestStreamConcurrentWriters pulls deltas while decisions are added and
// deleted concurrently: a bouncer that applies every delta must end with
// exactly the active set, none missed and none left over.
func TestStreamConcurrentWriters(t *testing.T) {
	f := newFixture(t)
	key := f.bouncerKey(t, "fw")
	view := map[int64]bool{}
	apply := func(r streamResp) {
		for _, d := range r.New {
			view[d.ID] = true
		}
		for _, d := range r.Deleted {
			delete(view, d.ID)
		}
	}
	apply(pull(t, f.lapi.URL, key, true, ""))
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				ip := netip.AddrFrom4([4]byte{198, 18, byte(w), byte(i)})
				ds := []model.Decision{{Value: netip.PrefixFrom(ip, 32), Type: "ban", Origin: model.OriginAPI, Until: time.Now().Add(time.Hour)}}
				if err := f.svc.Add(ctx, ds); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if _, err := f.svc.Delete(ctx, store.Filter{ID: ds[0].ID}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	pulls := 0
	for pulling := true; pulling; {
		select {
		case <-done:
			pulling = false
		default:
			apply(pull(t, f.lapi.URL, key, false, ""))
			pulls++
		}
	}
	if pulls < 5 {
		t.Errorf("only %d pulls overlapped the writers", pulls)
	}
	apply(pull(t, f.lapi.URL, key, false, ""))
	active, err := f.st.Active(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{}
	for _, d := range active {
		want[d.ID] = true
	}
	if len(want) != 4*40 {
		t.Fatalf("%d active decisions, want %d", len(want), 4*40)
	}
	for id := range want {
		if !view[id] {
			t.Errorf("bouncer missed decision %d", id)
		}
	}
	for id := range view {
		if !want[id] {
			t.Errorf("bouncer kept deleted decision %d", id)
		}
	}
}
