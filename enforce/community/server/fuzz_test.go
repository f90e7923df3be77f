package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// FuzzSignals posts attacker-controlled bodies to the signals endpoint of
// an enrolled reporter. Invariant: the server answers 200 or a 4xx, never
// an internal error, and it never stores more reports than the body held
// signals nor any report of a non-public address.
func FuzzSignals(f *testing.F) {
	for _, s := range []string{
		`[{"scenario":"a/b","source":{"scope":"Ip","value":"45.77.1.2"}}]`,
		`[{"scenario":"a/b","source":{"scope":"ip","ip":"2a01:4f8::1"}},{"scenario":"","source":null}]`,
		`[{"scenario":"a/b","source":{"scope":"Range","value":"45.77.0.0/16"}}]`,
		`[{"scenario":"a/b","source":{"scope":"Ip","value":"10.0.0.1"}}]`,
		`[{"scenario":"a/b","source":{"scope":"Ip","value":"::ffff:45.77.1.3"}}]`,
		`{}`, `[]`, `[1,2]`, `null`, `[{"scenario":"x"}] trailing`,
	} {
		f.Add(s)
	}
	fx := newFixture(f, "", nil)
	r := fx.reporter(f, "fuzz", "127.0.0.2")
	h := fx.srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		before := fx.srv.Stats()
		req := httptest.NewRequest("POST", "/v3/signals", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.RemoteAddr = "127.0.0.2:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK && (w.Code < 400 || w.Code >= 500) {
			t.Fatalf("answered %d: %s", w.Code, w.Body)
		}
		after := fx.srv.Stats()
		if stored := after.Signals - before.Signals; stored > int64(strings.Count(body, "{")) {
			t.Fatalf("%d reports stored from %q", stored, body)
		}
		rows, err := fx.srv.db.Query(`SELECT addr FROM reports`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var a string
			rows.Scan(&a)
			if ad, err := netip.ParseAddr(a); err != nil || ad.Is4In6() || !ad.IsGlobalUnicast() || ad.IsPrivate() {
				t.Fatalf("stored report of %q", a)
			}
		}
	})
}

func TestClientIPForwardedFor(t *testing.T) {
	for _, trust := range []bool{false, true} {
		s := &Server{cfg: Config{TrustForwardedFor: trust}}
		req := httptest.NewRequest("POST", "/", nil)
		req.RemoteAddr = "127.0.0.1:1"
		req.Header.Set("X-Forwarded-For", "198.51.100.7, 10.0.0.1")
		want := "127.0.0.1"
		if trust {
			want = "198.51.100.7"
		}
		if got := s.clientIP(req).String(); got != want {
			t.Errorf("trust %v: %s, want %s", trust, got, want)
		}
	}
}
