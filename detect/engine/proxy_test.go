package engine

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/parse"
)

// The shipped nginx parser behind a trusted proxy: a scan relayed by the
// proxy bans the client its X-Forwarded-For names, not the proxy; the same
// header sent straight from an untrusted address bans that address, not
// the one it names.
func TestNginxBehindTrustedProxy(t *testing.T) {
	e, err := New(Config{
		HubDir: "../../packaging/hub", PatternDir: "../../packaging/patterns", Items: []string{"moat/nginx"}, Replay: true,
		TrustedProxies: parse.TrustedProxies{Header: "X-Forwarded-For", Proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	banned := map[string]bool{}
	scan := func(peer, xff string) {
		for i := range 15 {
			raw := fmt.Sprintf(`%s - - [%s] "GET /probe-%d.php HTTP/1.1" 404 153 "-" "curl/8.5" "%s"`, peer, t0.Add(time.Duration(i)*time.Second).Format("02/Jan/2006:15:04:05 -0700"), i, xff)
			for _, a := range e.Process(detect.Line{Raw: raw, Labels: map[string]string{"type": "nginx"}, Process: true, ReadAt: t0}) {
				banned[a.Value] = true
			}
		}
	}
	scan("10.0.0.2", "203.0.113.5, 10.0.0.3")
	scan("198.51.100.66", "203.0.113.77")
	for _, a := range e.Flush() {
		banned[a.Value] = true
	}
	if !banned["203.0.113.5"] || !banned["198.51.100.66"] || len(banned) != 2 {
		t.Fatalf("alerts on %v, want 203.0.113.5 (behind the proxy) and 198.51.100.66 (spoofing the header)", banned)
	}
	if st := e.Stats().Proxies; st.Rewritten != 15 || st.Refused != 0 {
		t.Errorf("proxy stats %+v, want 15 rewritten", st)
	}
}
