package parse

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
)

func testProxies(header string) TrustedProxies {
	return TrustedProxies{Header: header, Proxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.10/32"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		// Written mapped, trusted as the IPv4 range it is.
		netip.MustParsePrefix("::ffff:172.16.0.0/108"),
	}}
}

func hops(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, ", ")
}

// TestTrustedProxies: the source moves to the header's client only when
// the logged peer is a trusted proxy, and then to the right-most hop that
// is not itself one; hostile headers leave the peer where it was.
func TestTrustedProxies(t *testing.T) {
	const attacker, client = "198.51.100.66", "203.0.113.5"
	for _, tc := range []struct {
		name       string
		header     string // "" is X-Forwarded-For
		peer       string
		value      string
		noField    bool
		want       string // source_ip after; "" is the peer
		refused    bool
		noDecision bool // apply reports it has not decided yet
	}{
		// Anyone may send the header: from an untrusted peer it is text.
		{name: "untrusted peer", peer: attacker, value: client},
		{name: "untrusted peer names a proxy", peer: attacker, value: "10.0.0.1"},
		{name: "untrusted peer names a chain", peer: attacker, value: client + ", 10.0.0.3"},
		{name: "untrusted IPv6 peer", peer: "2001:db8:2::1", value: client},
		{name: "peer is not an address", peer: "example.org", value: client},
		// From a trusted proxy.
		{name: "one hop", peer: "10.0.0.2", value: client, want: client},
		{name: "through a second proxy", peer: "10.0.0.2", value: client + ", 10.0.0.3", want: client},
		{name: "client's own claim ignored", peer: "10.0.0.2", value: "1.1.1.1, " + client, want: client},
		{name: "first hop untrusted", peer: "10.0.0.2", value: client + ", " + attacker + ", 10.0.0.3", want: attacker},
		{name: "every hop a proxy", peer: "10.0.0.2", value: "10.0.0.5, 192.0.2.10", want: "10.0.0.5"},
		{name: "same as the peer", peer: "10.0.0.2", value: "10.0.0.2", want: "10.0.0.2"},
		{name: "spaces", peer: "10.0.0.2", value: "  " + client + "\t,   10.0.0.3  ", want: client},
		{name: "port", peer: "10.0.0.2", value: client + ":51234", want: client},
		{name: "IPv6", peer: "2001:db8:1::1", value: "2001:db8:ffff::9", want: "2001:db8:ffff::9"},
		{name: "IPv6 in brackets with port", peer: "10.0.0.2", value: "[2001:db8:ffff::9]:443", want: "2001:db8:ffff::9"},
		{name: "IPv6 in brackets", peer: "10.0.0.2", value: "[2001:db8:ffff::9]", want: "2001:db8:ffff::9"},
		{name: "IPv4-mapped hop", peer: "10.0.0.2", value: "::ffff:" + client, want: client},
		{name: "IPv4-mapped peer", peer: "::ffff:10.0.0.2", value: client, want: client},
		{name: "mapped range trusted", peer: "172.16.3.4", value: client, want: client},
		{name: "garbage left of the client", peer: "10.0.0.2", value: "<script>, " + client, want: client},
		{name: "no header", peer: "10.0.0.2", value: "-"},
		{name: "empty header", peer: "10.0.0.2", value: ""},
		{name: "no header field", peer: "10.0.0.2", noField: true, noDecision: true},
		// A trusted proxy's header that names no client: the peer stays.
		{name: "garbage", peer: "10.0.0.2", value: "not an address", refused: true},
		{name: "garbage right of the client", peer: "10.0.0.2", value: client + ", garbage", refused: true},
		{name: "empty hop", peer: "10.0.0.2", value: client + ",,10.0.0.3", refused: true},
		{name: "trailing comma", peer: "10.0.0.2", value: client + ",", refused: true},
		{name: "spaces only between", peer: "10.0.0.2", value: client + " 10.0.0.3", refused: true},
		{name: "zone", peer: "10.0.0.2", value: "fe80::1%eth0", refused: true},
		{name: "control character", peer: "10.0.0.2", value: client + "\x00", refused: true},
		{name: "hostname", peer: "10.0.0.2", value: "evil.example", refused: true},
		{name: "CIDR", peer: "10.0.0.2", value: "203.0.113.0/24", refused: true},
		{name: "unknown", peer: "10.0.0.2", value: "unknown", refused: true},
		// Many addresses.
		{name: "many clients", peer: "10.0.0.2", value: hops(5000, func(i int) string { return fmt.Sprintf("198.18.%d.%d", i/250, i%250) }), want: "198.18.19.249"},
		{name: "many proxies", peer: "10.0.0.2", value: client + ", " + hops(100, func(i int) string { return fmt.Sprintf("10.1.0.%d", i) }), refused: true},
		{name: "just under the hop limit", peer: "10.0.0.2", value: client + ", " + hops(maxForwardedHops-1, func(i int) string { return fmt.Sprintf("10.1.0.%d", i) }), want: client},
		{name: "long garbage left", peer: "10.0.0.2", value: strings.Repeat("A", 1<<20) + ", " + client, want: client},
		{name: "long hop", peer: "10.0.0.2", value: strings.Repeat("1", 100), refused: true},
		// X-Real-IP: one address, read the same way.
		{name: "X-Real-IP", header: "X-Real-IP", peer: "10.0.0.2", value: client, want: client},
		{name: "X-Real-IP untrusted", header: "X-Real-IP", peer: attacker, value: client},
		// Forwarded (RFC 7239).
		{name: "Forwarded", header: "Forwarded", peer: "10.0.0.2", value: "for=" + client + ";proto=https;by=10.0.0.2", want: client},
		{name: "Forwarded IPv6 quoted", header: "Forwarded", peer: "10.0.0.2", value: `for="[2001:db8:cafe::17]:4711"`, want: "2001:db8:cafe::17"},
		{name: "Forwarded chain", header: "Forwarded", peer: "10.0.0.2", value: "for=" + attacker + ", for=" + client + ";proto=http, For=10.0.0.3", want: client},
		{name: "Forwarded unknown", header: "Forwarded", peer: "10.0.0.2", value: "for=unknown", refused: true},
		{name: "Forwarded obfuscated", header: "Forwarded", peer: "10.0.0.2", value: "for=_hidden", refused: true},
		{name: "Forwarded without for", header: "Forwarded", peer: "10.0.0.2", value: "proto=http", refused: true},
		{name: "Forwarded untrusted", header: "Forwarded", peer: attacker, value: "for=" + client},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == "" {
				h = "X-Forwarded-For"
			}
			r, err := newProxyRule(testProxies(h))
			if err != nil {
				t.Fatal(err)
			}
			evt := detect.NewEvent(detect.Line{})
			evt.Meta["source_ip"] = tc.peer
			if !tc.noField {
				evt.Parsed[r.fields[0]] = tc.value
			}
			decided := r.apply(evt)
			want := tc.want
			if want == "" {
				want = tc.peer
			}
			if got := evt.Meta["source_ip"]; got != want {
				t.Errorf("source_ip = %q, want %q", got, want)
			}
			rewritten := evt.Meta["source_ip"] != tc.peer
			if got := evt.Meta["proxy_ip"]; rewritten != (got != "") {
				t.Errorf("proxy_ip = %q after a rewrite %v", got, rewritten)
			}
			if got := r.refused.Load() == 1; got != tc.refused {
				t.Errorf("refused = %v, want %v", got, tc.refused)
			}
			if decided == tc.noDecision {
				t.Errorf("apply = %v", decided)
			}
		})
	}
}

// The header is looked up as nginx names its variable, then bare, as some
// hub parsers capture it.
func TestProxyHeaderFields(t *testing.T) {
	got := TrustedProxies{Header: "X-Forwarded-For"}.HeaderFields()
	if len(got) != 2 || got[0] != "http_x_forwarded_for" || got[1] != "x_forwarded_for" {
		t.Fatalf("HeaderFields = %q", got)
	}
	r, err := newProxyRule(testProxies("X-Forwarded-For"))
	if err != nil {
		t.Fatal(err)
	}
	evt := detect.NewEvent(detect.Line{})
	evt.Meta["source_ip"] = "10.0.0.2"
	evt.Parsed["x_forwarded_for"] = "203.0.113.5"
	r.apply(evt)
	if evt.Meta["source_ip"] != "203.0.113.5" {
		t.Fatalf("source_ip = %q from x_forwarded_for", evt.Meta["source_ip"])
	}
	if r, err := newProxyRule(TrustedProxies{}); r != nil || err != nil {
		t.Fatalf("no proxies: %v, %v; want off", r, err)
	}
	if _, err := newProxyRule(TrustedProxies{Proxies: testProxies("").Proxies}); err == nil {
		t.Fatal("proxies without a header name loaded")
	}
}

// In a pipeline the rewrite runs after the stage that set the source, so
// a later stage (a whitelist, an enricher) sees the client; the peer's
// own header from an untrusted address changes nothing.
func TestPipelineTrustedProxies(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) File {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return File{Path: p, Stage: filepath.Base(filepath.Dir(filepath.Dir(p)))}
	}
	files := []File{
		write("s01-parse/me/web.yaml", `name: me/web
filter: "evt.Line.Labels.type == 'web'"
onsuccess: next_stage
grok:
  pattern: '^%{IP:remote_addr} "%{DATA:http_x_forwarded_for}" %{DATA:http_path}$'
  apply_on: Line.Raw
statics:
  - meta: source_ip
    expression: evt.Parsed.remote_addr
  - meta: log_type
    value: http_access-log
`),
		write("s02-enrich/me/office.yaml", `name: me/office
description: the office is never banned
whitelist:
  reason: office
  cidr: [192.0.2.128/25]
`),
	}
	p, err := Load(files, Options{PatternDir: "../../packaging/patterns", TrustedProxies: testProxies("X-Forwarded-For")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line, source string
		whitelisted  bool
	}{
		{`10.0.0.2 "203.0.113.5, 10.0.0.3" /login`, "203.0.113.5", false},
		{`10.0.0.2 "192.0.2.200" /`, "192.0.2.200", true},
		{`198.51.100.66 "192.0.2.200" /`, "198.51.100.66", false},
		{`10.0.0.2 "-" /health`, "10.0.0.2", false},
	} {
		evt := detect.NewEvent(detect.Line{Raw: tc.line, Labels: map[string]string{"type": "web"}, Process: true})
		if !p.Parse(evt) {
			t.Fatalf("%q did not parse", tc.line)
		}
		if evt.Meta["source_ip"] != tc.source || evt.Whitelisted != tc.whitelisted {
			t.Errorf("%q: source %q whitelisted %v, want %q %v", tc.line, evt.Meta["source_ip"], evt.Whitelisted, tc.source, tc.whitelisted)
		}
	}
	if st := p.ProxyStats(); st.Rewritten != 2 || st.Refused != 0 {
		t.Errorf("stats %+v, want 2 rewritten", st)
	}
	w := p.Worker()
	evt := detect.NewEvent(detect.Line{Raw: `10.0.0.2 "203.0.113.9" /`, Labels: map[string]string{"type": "web"}, Process: true})
	if !w.Parse(evt) || evt.Meta["source_ip"] != "203.0.113.9" {
		t.Errorf("worker: source %q", evt.Meta["source_ip"])
	}
}

// FuzzTrustedProxies: whatever the header holds, an untrusted peer keeps
// its address, and a rewritten source is an address without a zone.
func FuzzTrustedProxies(f *testing.F) {
	for _, s := range []string{"203.0.113.5", "203.0.113.5, 10.0.0.3", "[2001:db8::1]:80", "for=\"[::1]\";by=x", "-", ",,,", "10.0.0.1,10.0.0.2"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, hdr string, forwarded bool) {
		h := "X-Forwarded-For"
		if forwarded {
			h = "Forwarded"
		}
		r, err := newProxyRule(testProxies(h))
		if err != nil {
			t.Fatal(err)
		}
		for _, peer := range []string{"198.51.100.66", "10.0.0.2"} {
			evt := detect.NewEvent(detect.Line{})
			evt.Meta["source_ip"] = peer
			evt.Parsed[r.fields[0]] = hdr
			r.apply(evt)
			got := evt.Meta["source_ip"]
			if peer == "198.51.100.66" && got != peer {
				t.Fatalf("untrusted peer moved to %q by %q", got, hdr)
			}
			if a, err := netip.ParseAddr(got); err != nil || a.Zone() != "" {
				t.Fatalf("source %q from %q", got, hdr)
			}
		}
	})
}
