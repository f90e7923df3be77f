package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

// FuzzFilterFromQuery: a query either fails as a bad request or yields a
// filter no wider than asked. Every filter parameter given is in the
// filter, exactly as given (addresses parsed, ranges canonical), and the
// bouncer endpoints never get the admin-only ones.
func FuzzFilterFromQuery(f *testing.F) {
	for _, q := range []string{
		"ip=198.18.0.1", "ip=::ffff:198.18.0.1", "ip=fe80::1%25eth0", "ip=", "ip=1.2.3.4&ip=5.6.7.8",
		"range=198.18.0.0/16", "range=198.18.0.7/16", "range=2001:db8::/32&scope=Range", "range=0.0.0.0/0",
		"value=198.18.0.1/32", "value=x&type=ban&scope=ip", "scope=" + strings.Repeat("a", 300),
		"origin=cli&scenario=ssh&id=7&history=true&limit=10", "id=-1", "limit=1e3", "ip=%zz", "ip=1.2.3.4;range=1.0.0.0/8",
	} {
		f.Add(q, false)
		f.Add(q, true)
	}
	f.Fuzz(func(t *testing.T, raw string, admin bool) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/decisions", RawQuery: raw}}
		fl, err := filterFromQuery(r, admin)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != http.StatusBadRequest {
				t.Fatalf("%q: error %v is not a bad request", raw, err)
			}
			return
		}
		q := r.URL.Query()
		if v := q.Get("ip"); v != "" {
			a, err := netip.ParseAddr(v)
			if err != nil || fl.IP != a.Unmap() {
				t.Fatalf("%q: ip %q gave filter IP %v", raw, v, fl.IP)
			}
		} else if fl.IP.IsValid() {
			t.Fatalf("%q: filter IP %v not asked for", raw, fl.IP)
		}
		if v := q.Get("range"); v != "" {
			p, err := model.ParseValue(v)
			if err != nil || fl.Range != p {
				t.Fatalf("%q: range %q gave filter range %v", raw, v, fl.Range)
			}
		} else if fl.Range.IsValid() {
			t.Fatalf("%q: filter range %v not asked for", raw, fl.Range)
		}
		if v := q.Get("value"); (v == "") != (fl.Value == "") {
			t.Fatalf("%q: value %q gave filter value %q", raw, v, fl.Value)
		}
		if fl.Scope != q.Get("scope") || fl.Type != q.Get("type") {
			t.Fatalf("%q: filter scope %q type %q", raw, fl.Scope, fl.Type)
		}
		if !admin {
			if fl.Origin != "" || fl.Scenario != "" || fl.ID != 0 || fl.History || fl.Limit != 0 {
				t.Fatalf("%q: bouncer filter has admin fields: %+v", raw, fl)
			}
		} else if fl.Origin != q.Get("origin") || fl.Scenario != q.Get("scenario") || fl.ID < 0 || fl.Limit < 0 || (q.Get("id") != "") != (fl.ID != 0) {
			t.Fatalf("%q: admin filter %+v", raw, fl)
		}
		if fl.Empty() {
			for _, k := range []string{"ip", "range", "value", "scope", "type"} {
				if q.Get(k) != "" {
					t.Fatalf("%q: %s given, filter selects everything", raw, k)
				}
			}
		}
	})
}

type nopEnforcer struct{}

func (nopEnforcer) Apply(context.Context, []model.Decision, []model.Decision) error { return nil }

// fuzzServer is a server over a fresh store holding a few decisions of
// every kind, and a bouncer's key.
func fuzzServer(tb testing.TB) (*Server, *decision.Service, string) {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(tb.TempDir(), store.FileName), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	prof, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := decision.New(st, prof, nopEnforcer{}, netip.MustParsePrefix("198.18.200.0/24"))
	if err != nil {
		tb.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	var ds []model.Decision
	for _, d := range []struct {
		value, typ, scenario string
		origin               model.Origin
		sim                  bool
	}{
		{"198.18.0.1", "ban", "moat/ssh-bf", model.OriginLocal, false},
		{"198.18.1.0/24", "ban", "moat/http-probing", model.OriginCLI, false},
		{"2001:db8::1", "captcha", "moat/http-sensitive-files", model.OriginAPI, false},
		{"2001:db8:1::/48", "ban", "crowdsecurity/ssh-slow-bf", model.OriginCommunity, false},
		{"198.18.2.9", "ban", "moat/ssh-bf", model.OriginLocal, true},
	} {
		ds = append(ds, model.Decision{Value: netip.MustParsePrefix(canonicalPrefix(d.value)), Type: d.typ, Origin: d.origin, Scenario: d.scenario, Until: until, Simulated: d.sim})
	}
	if err := svc.Add(ctx, ds); err != nil {
		tb.Fatal(err)
	}
	key, err := st.AddBouncer(ctx, "fuzz")
	if err != nil {
		tb.Fatal(err)
	}
	return NewServer(svc, st, func(context.Context) (Status, error) { return Status{Version: "test"}, nil }), svc, key
}

func canonicalPrefix(v string) string {
	if strings.Contains(v, "/") {
		return v
	}
	a := netip.MustParseAddr(v)
	return netip.PrefixFrom(a, a.BitLen()).String()
}

func serve(h http.Handler, method, target, key string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:8088/", bytes.NewReader(body))
	u, err := url.ParseRequestURI(target)
	if err == nil {
		r.URL, r.RequestURI = u, target
	}
	r.RemoteAddr = "127.0.0.1:4242"
	if key != "" {
		r.Header.Set("X-Api-Key", key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// containsAny reports whether s holds one of subs.
func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(x string) bool { return strings.Contains(s, x) })
}

// FuzzBouncerQuery sends the CrowdSec bouncer endpoints attacker-chosen
// query strings. They answer 200 or 400, never fail inside; and every
// decision they return is one the query asked for: the stream keeps to the
// scopes, origins and scenario words asked (simulated ones only on
// request), and GET /v1/decisions to the address, range, scope, type and
// value asked.
func FuzzBouncerQuery(f *testing.F) {
	for _, q := range []string{
		"", "scopes=ip", "scopes=Range,ip&origins=cscli", "origins=crowdsec,CAPI", "scenarios_containing=ssh&scenarios_not_containing=slow",
		"simulated=true", "scopes=,%20,&origins=", "ip=198.18.0.1", "ip=198.18.1.77", "range=198.18.1.0/25", "range=2001:db8::/16",
		"scope=range&type=ban", "value=198.18.0.1/32", "ip=::ffff:198.18.0.1", "type=captcha&simulated=true", "ip=%zz", "ip=fe80::1%25lo",
	} {
		f.Add(q)
	}
	srv, _, key := fuzzServer(f)
	h := srv.BouncerHandler()
	f.Fuzz(func(t *testing.T, raw string) {
		if strings.ContainsAny(raw, "# \t\r\n") {
			return // not a query a client can put in a request line
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			q = nil // the server reads what it can; check against nothing asked
		}
		w := serve(h, http.MethodGet, "/v1/decisions/stream?startup=true&"+raw, key, nil)
		switch w.Code {
		case http.StatusOK:
			var resp struct{ New, Deleted []lapiDecision }
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("stream %q: body %q: %v", raw, w.Body, err)
			}
			scopes := splitList(q["scopes"])
			if len(scopes) == 0 {
				scopes = []string{"ip", "range"}
			}
			origins := splitList(q["origins"])
			for _, d := range resp.New {
				switch {
				case !slices.ContainsFunc(scopes, func(s string) bool { return strings.EqualFold(s, d.Scope) }):
				case len(origins) > 0 && !slices.Contains(origins, d.Origin):
				case containsAny(d.Scenario, splitList(q["scenarios_not_containing"])):
				case len(splitList(q["scenarios_containing"])) > 0 && !containsAny(d.Scenario, splitList(q["scenarios_containing"])):
				case d.Simulated && q.Get("simulated") != "true":
				default:
					continue
				}
				t.Fatalf("stream %q returned %+v, not asked for", raw, d)
			}
		case http.StatusBadRequest:
		default:
			t.Fatalf("stream %q: status %d: %s", raw, w.Code, w.Body)
		}

		w = serve(h, http.MethodGet, "/v1/decisions?"+raw, key, nil)
		switch w.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			if q != nil {
				r := &http.Request{URL: &url.URL{RawQuery: raw}}
				if _, err := filterFromQuery(r, false); err == nil {
					t.Fatalf("decisions %q: 400 for a valid filter: %s", raw, w.Body)
				}
			}
			return
		default:
			t.Fatalf("decisions %q: status %d: %s", raw, w.Code, w.Body)
		}
		var ds []lapiDecision
		if err := json.Unmarshal(w.Body.Bytes(), &ds); err != nil {
			t.Fatalf("decisions %q: body %q: %v", raw, w.Body, err)
		}
		for _, d := range ds {
			p, err := model.ParseValue(d.Value)
			if err != nil {
				t.Fatalf("decisions %q: value %q: %v", raw, d.Value, err)
			}
			ok := true
			if v := q.Get("ip"); v != "" {
				a, err := netip.ParseAddr(v)
				ok = ok && err == nil && p.Contains(a.Unmap())
			}
			if v := q.Get("range"); v != "" {
				r, err := model.ParseValue(v)
				ok = ok && err == nil && p.Bits() <= r.Bits() && p.Contains(r.Addr())
			}
			if v := q.Get("scope"); v != "" {
				ok = ok && strings.EqualFold(v, d.Scope)
			}
			if v := q.Get("type"); v != "" {
				ok = ok && v == d.Type
			}
			if v := q.Get("value"); v != "" {
				want := v
				if r, err := model.ParseValue(v); err == nil {
					want = model.ValueString(r)
				}
				ok = ok && want == d.Value
			}
			ok = ok && (!d.Simulated || q.Get("simulated") == "true")
			if !ok {
				t.Fatalf("decisions %q returned %+v, not asked for", raw, d)
			}
		}
	})
}

func allowlist(t *testing.T, h http.Handler) []decision.AllowEntry {
	t.Helper()
	w := serve(h, http.MethodGet, "/v1/admin/allowlist", "", nil)
	var out []decision.AllowEntry
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &out) != nil {
		t.Fatalf("allowlist: %d %s", w.Code, w.Body)
	}
	return out
}

// FuzzAdminBodies posts attacker-chosen bodies to the allowlist and
// bouncer endpoints. A body either is refused with 400 and changes
// nothing, or is one JSON object whose value the server stored exactly:
// the allowlist then holds the parsed address or range, and the new
// bouncer's key opens the bouncer API. Both are removed again after.
func FuzzAdminBodies(f *testing.F) {
	for _, b := range []string{
		`{"value":"198.18.9.1","reason":"office"}`, `{"value":"198.18.9.0/24"}`, `{"value":"2001:db8:9::/48","reason":"x"}`,
		`{"value":"0.0.0.0/0"}`, `{"value":"198.18.9.1"} {"value":"198.18.9.2"}`, `{"value":"fe80::1%eth0"}`, `{"value":" 198.18.9.3 "}`,
		`{"value":"198.18.9.1","extra":1}`, `{"value":1}`, `[]`, `null`, `{"Value":"198.18.9.4"}`, `{"name":"nginx-bouncer"}`,
		`{"name":"../x"}`, `{"name":"a\u0000b"}`, `{"name":"` + strings.Repeat("b", 129) + `"}`,
	} {
		f.Add([]byte(b), false)
		f.Add([]byte(b), true)
	}
	srv, _, _ := fuzzServer(f)
	h := srv.AdminHandler()
	f.Fuzz(func(t *testing.T, body []byte, bouncer bool) {
		if bouncer {
			before, _ := srv.st.ListBouncers(context.Background())
			w := serve(h, http.MethodPost, "/v1/admin/bouncers", "", body)
			switch w.Code {
			case http.StatusCreated:
			case http.StatusBadRequest, http.StatusConflict:
				after, _ := srv.st.ListBouncers(context.Background())
				if len(after) != len(before) {
					t.Fatalf("refused body %q added a bouncer", body)
				}
				return
			default:
				t.Fatalf("body %q: status %d: %s", body, w.Code, w.Body)
			}
			var nb NewBouncer
			if err := json.Unmarshal(w.Body.Bytes(), &nb); err != nil || nb.Key == "" || !validName(nb.Name) || !json.Valid(body) {
				t.Fatalf("body %q: created %q (%v)", body, w.Body, err)
			}
			if c := serve(srv.BouncerHandler(), http.MethodGet, "/v1/decisions?ip=198.18.0.1", nb.Key, nil).Code; c != http.StatusOK {
				t.Fatalf("new bouncer %q: status %d", nb.Name, c)
			}
			if c := serve(h, http.MethodDelete, "/v1/admin/bouncers/"+url.PathEscape(nb.Name), "", nil).Code; c/100 != 2 {
				t.Fatalf("delete bouncer %q: status %d", nb.Name, c)
			}
			return
		}
		before := allowlist(t, h)
		w := serve(h, http.MethodPost, "/v1/admin/allowlist", "", body)
		switch w.Code {
		case http.StatusCreated:
		case http.StatusBadRequest:
			if after := allowlist(t, h); len(after) != len(before) {
				t.Fatalf("refused body %q changed the allowlist: %v", body, after)
			}
			return
		default:
			t.Fatalf("body %q: status %d: %s", body, w.Code, w.Body)
		}
		var req AllowRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("accepted body %q is not an allow request: %v", body, err)
		}
		want, err := model.ParseValue(req.Value)
		if err != nil {
			t.Fatalf("accepted value %q: %v", req.Value, err)
		}
		var resp AllowResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Entry.Value != want {
			t.Fatalf("body %q: answered %s (%v), want entry %v", body, w.Body, err, want)
		}
		if !slices.ContainsFunc(allowlist(t, h), func(e decision.AllowEntry) bool { return e.Value == want }) {
			t.Fatalf("body %q: %v not in the allowlist", body, want)
		}
		if c := serve(h, http.MethodDelete, "/v1/admin/allowlist?value="+url.QueryEscape(want.String()), "", nil).Code; c/100 != 2 {
			t.Fatalf("delete allow %v: status %d", want, c)
		}
	})
}
