package grok

import (
	"maps"
	"os"
	"regexp"
	"testing"

	"github.com/moatsec/moat/packaging"
)

// shippedGroks compiles every grok of the parsers moat ships (hub/,
// patterns/ as embedded), not a copy that drifts from them.
func shippedGroks(tb testing.TB) []*Pattern {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.CopyFS(dir, packaging.Files); err != nil {
		tb.Fatalf("extract shipped content: %v", err)
	}
	return compileParserDir(tb, dir)
}

// refMatch is what a grok means, computed with nothing but Go's regexp on
// the fully expanded pattern: the leftmost match, every named field set
// ("" when its group did not take part), and for a name used twice the
// last non-empty value.
func refMatch(re *regexp.Regexp, names []string, s string, parsed map[string]string) bool {
	idx := re.FindStringSubmatchIndex(s)
	if idx == nil {
		return false
	}
	set := map[string]bool{}
	for i := 1; i < len(names); i++ {
		n := names[i]
		if n == "" {
			continue
		}
		v := ""
		if idx[2*i] >= 0 {
			v = s[idx[2*i]:idx[2*i+1]]
		}
		if v == "" && set[n] {
			continue
		}
		set[n] = true
		parsed[n] = v
	}
	return true
}

// fuzzGroks is every grok the shipped parsers compile, plus the patterns
// the hand-written matchers exist for (hub syslog, nginx access, http
// path splitting) compiled with the definitions those matchers assume.
func fuzzGroks(tb testing.TB) []*Pattern {
	tb.Helper()
	gs := shippedGroks(tb)
	if len(gs) == 0 {
		tb.Fatal("the shipped parsers compile no grok")
	}
	hub := New(Options{})
	for k, v := range syslogDefs {
		hub.Add(k, v)
	}
	for _, vr := range nginxVariants {
		for k, v := range vr.defs {
			hub.Add(k, v)
		}
	}
	hub.Add("IPv4_WORKAROUND", `(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)`)
	hub.Add("IP_WORKAROUND", `(?:%{IPV6}|%{IPv4_WORKAROUND})`)
	http := New(Options{})
	for k, v := range httpDefs {
		http.Add(k, v)
	}
	for _, x := range []struct {
		lib *Library
		src string
	}{
		{hub, "^%{SYSLOGLINE}"},
		{hub, nginxAccess},
		{hub, nginxAccessNGUser},
		{hub, `Invalid user\s*%{USERNAME:sshd_invalid_user}? from %{IP_WORKAROUND:sshd_client_ip}( port \d+)?`},
		{hub, `Connection (closed|reset) by( (authenticating|invalid) user %{USERNAME:u})? %{IP:ip} port \d+ \[preauth\]`},
		{hub, `from %{IPORHOST:h}`},
		{http, httpArgsPattern},
		{http, httpFilePattern},
	} {
		c, err := x.lib.Compile(x.src)
		if err != nil {
			tb.Fatalf("compile %s: %v", x.src, err)
		}
		gs = append(gs, c)
	}
	return gs
}

// Every grok, with whatever matcher tiers it was given (hand-written fast
// paths, IPv4-only and IPv6-run variants, anchored tries, the ASCII
// matcher), matches exactly where Go's regexp on its expanded pattern
// matches, with the same fields.
func FuzzGrokMatchesRegexp(f *testing.F) {
	for _, s := range syslogSeeds(f) {
		f.Add(s)
	}
	for _, s := range []string{
		`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET /blog/post-21 HTTP/1.1" 200 32774 "https://www.example.org/" "Mozilla/5.0 (X11; Linux x86_64)"`,
		`2001:db8:83ab:be4f::a959 - bob [01/Mar/2026:00:00:00 +0000] "POST /wp-login.php HTTP/2.0" 401 0 "-" "curl/8" "198.18.0.9"`,
		`www.example.org:443 198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-" 12 0.1 [up] []`,
		`fe80::1%eth0 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		"Mar  1 00:00:00 web1 sshd[1]: Failed password for invalid user admin from 2001:db8::7 port 22 ssh2",
		"Mar  1 00:00:00 web1 sshd[1]: Invalid user x from 198.18.0.1 from 198.18.0.2 port 22",
		"Mar  1 00:00:00 fw kernel: [12345.678] IN=eth0 OUT= MAC=00:00 SRC=198.18.0.1 DST=198.18.0.2 LEN=40 PROTO=TCP SPT=1 DPT=22",
		"Connection closed by authenticating user root 2001:db8:0:0:0:0:0:1 port 22 [preauth]",
		"pam_unix(sshd:auth): authentication failure; rhost=2001:db8::9  user=root",
		"/a/b.php?x=1/2.3", "/a/.env", "/", "?",
	} {
		f.Add(s)
	}
	gs := fuzzGroks(f)
	type ref struct {
		re    *regexp.Regexp
		names []string
	}
	refs := make([]ref, len(gs))
	for i, c := range gs {
		// A fresh regexp from the expanded text: no variant, prefilter
		// or fast path of the grok takes part.
		refs[i] = ref{regexp.MustCompile(c.full.rx), c.full.names}
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, c := range gs {
			got := map[string]string{}
			m := c.Match(s, got)
			want := map[string]string{}
			mw := refMatch(refs[i].re, refs[i].names, s, want)
			if m != mw || !maps.Equal(got, want) {
				t.Fatalf("grok %.80q on %q:\n grok   %v %v\n regexp %v %v", c.full.rx, s, m, got, mw, want)
			}
		}
	})
}
