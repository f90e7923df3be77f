package grok

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The syslog fast path agrees with the regexp whenever it answers.
func FuzzSyslogFastPath(f *testing.F) {
	for _, s := range syslogSeeds(f) {
		f.Add(s)
	}
	g := New(Options{})
	if err := g.LoadDir(filepath.Join(sharedHub(f), "patterns")); err != nil {
		f.Fatal(err)
	}
	c, err := g.Compile("^%{SYSLOGLINE}")
	if err != nil || c.fast == nil {
		f.Fatalf("fast path not installed: %v", err)
	}
	slow := regexpOnly(c)
	f.Fuzz(func(t *testing.T, s string) {
		fastAgrees(t, fastSyslogLine, slow, s, true)
	})
}

// fastAgrees fails t when the hand-written matcher fast answers on s other
// than slow, the same pattern on Go's regexp alone; onMiss: the fields
// must agree on a miss too.
func fastAgrees(t *testing.T, fast func(string, map[string]string) (bool, bool), slow *Pattern, s string, onMiss bool) {
	t.Helper()
	got := map[string]string{}
	m, ok := fast(s, got)
	if !ok {
		return
	}
	re := map[string]string{}
	mr := slow.Match(s, re)
	if m != mr || (m || onMiss) && !maps.Equal(got, re) {
		t.Fatalf("%q: fast %v %v, regexp %v %v", s, m, got, mr, re)
	}
}

// The IPv4-only, anchored and ASCII variants give the same captures as
// the full unanchored regexp.
func FuzzGrokVariants(f *testing.F) {
	f.Add(`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8"`)
	f.Add(`www.example.org:443 2001:db8::1 - bob [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/2.0" 404 0 "-" "-"`)
	f.Add("Failed password for invalid user admin from 198.18.0.7 port 22 ssh2")
	f.Add("Connection closed by authenticating user root 2001:db8:0:0:0:0:0:1 port 22 [preauth]")
	f.Add("Failed password for root from 2001:db8::7 port 22 ssh2")
	f.Add("Failed password for root from 2001:db8::7:: port 22 ssh2")
	f.Add("Failed password for root from 2001:db8:0:0:0:0:0:0:1 port 22 ssh2")
	f.Add("Failed password for root from dead::beef:1.2.3.4 port 22 ssh2")
	f.Add("Failed password for root from ::ffff:198.18.0.1 port 22 ssh2")
	f.Add("Failed password for root from fe80::1%eth0 port 22 ssh2")
	f.Add("Connection closed by 2001:db8::1 port 22 [preauth]")
	f.Add("Invalid user admin from 2001:db8:981e:df1c::1ee6 port 10049")
	f.Add("Invalid user admin from 2001:db8:981e:df1c::1ee6::7 port 1")
	f.Add("Invalid user from 1:2:3:4:5:6:7:8:9")
	f.Add("Invalid user x from ::")
	f.Add("Invalid user admin from 2001:db8::1")
	f.Add("Invalid user admin from 2001:db8::1:: port 7")
	f.Add("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=2001:db8::9  user=root")
	f.Add("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=2001:db8::9")
	f.Add("from abc:def::12345")
	// The literal prefix occurs first where no match starts.
	f.Add("Failed to log; Failed password for root from 198.18.0.7 port 22 ssh2")
	f.Add("Connection reset by x Connection closed by 198.18.0.9 port 1 [preauth]")
	f.Add("x " + strings.Repeat("a", 70) + ".example.org - - [01/Mar/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"")
	g := New(Options{})
	if err := g.LoadDir(filepath.Join(sharedHub(f), "patterns")); err != nil {
		f.Fatal(err)
	}
	g.Add("NGCUSTOMUSER", `[a-zA-Z0-9\.\@\-\+_%]+`)
	// sshd-logs' own definitions: an address followed by optional parts.
	g.Add("IPv4_WORKAROUND", `(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)`)
	g.Add("IP_WORKAROUND", `(?:%{IPV6}|%{IPv4_WORKAROUND})`)
	optionalTail := []string{
		`Invalid user\s*%{USERNAME:sshd_invalid_user}? from %{IP_WORKAROUND:sshd_client_ip}( port \d+)?`,
		`pam_%{DATA:pam_type}\(sshd:auth\): authentication failure; logname= uid=%{NUMBER:uid}? euid=%{NUMBER:euid}? tty=ssh ruser= rhost=%{IP_WORKAROUND:sshd_client_ip}( %{SPACE}user=%{USERNAME:sshd_invalid_user})?`,
	}
	var groks []*Pattern
	for _, p := range []string{
		`(%{IPORHOST:target_fqdn}(:%{INT:port})? )?%{IPORHOST:remote_addr} - (%{NGCUSTOMUSER:remote_user} )?\[%{HTTPDATE:time_local}\] "%{WORD:verb} %{DATA:request} HTTP/%{NUMBER:http_version}" %{NUMBER:status} %{NUMBER:body_bytes_sent} "%{NOTDQUOTE:http_referer}" "%{NOTDQUOTE:http_user_agent}"`,
		`%{SSHD_FAIL}`,
		`Connection (closed|reset) by( (authenticating|invalid) user %{USERNAME:u})? %{IP:ip} port \d+ \[preauth\]`,
		`%{SYSLOGBASE2} %{GREEDYDATA:message}`,
		`%{SSHD_INVAL_USER}`,
		`from %{IPORHOST:h}`,
		optionalTail[0],
		optionalTail[1],
	} {
		c, err := g.Compile(p)
		if err != nil {
			f.Fatal(err)
		}
		if c.v4 == nil {
			f.Fatalf("%s: no IPv4-only variant", p)
		}
		if (p == `%{SSHD_FAIL}` || p == `%{SSHD_INVAL_USER}` || slices.Contains(optionalTail, p)) && c.v6 == nil {
			f.Fatalf("%s: no IPv6-run variant", p)
		}
		groks = append(groks, c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// The patterns share one Text, as a parser node's children do,
		// which last held a text with neither an IPv6 run nor a long label.
		var text Text
		text.Set("from x")
		groks[5].MatchText(&text, map[string]string{})
		for _, c := range groks {
			got := map[string]string{}
			text.Set(s)
			m, _ := c.MatchText(&text, got)
			plain := regexpOnly(c)
			want := map[string]string{}
			mw := plain.Match(s, want)
			if m != mw || !maps.Equal(got, want) {
				t.Fatalf("%q: variants %v %v, full regexp %v %v", s, m, got, mw, want)
			}
		}
	})
}

// The nginx access fast path agrees with the regexp whenever it answers.
func FuzzNginxFastPath(f *testing.F) {
	for _, s := range []string{
		`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET /blog/post-21 HTTP/1.1" 200 32774 "https://www.example.org/" "Mozilla/5.0 (X11; Linux x86_64)"`,
		`2001:db8:83ab:be4f::a959 - bob [01/Mar/2026:00:00:00 +0000] "POST /wp-login.php HTTP/2.0" 401 0 "-" "curl/8"`,
		`www.example.org 198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET /a HTTP/1.1 HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET  HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-" 12 0.1 [up] []`,
		`198.18.0.1 - - [1/Mar/2026:00:00:00 +0000] "GET /x HTTP/.5" -3 +1.5 "a" "b" trailing`,
		`fe80::1%eth0 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - - [01/Foo/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`999.18.0.1 - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 -  [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - bob2 [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`198.18.0.1 - bob@x.org [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
		`www.example.org:8080 198.18.0.1 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-"`,
	} {
		f.Add(s)
	}
	g := New(Options{})
	if err := g.LoadDir(filepath.Join(sharedHub(f), "patterns")); err != nil {
		f.Fatal(err)
	}
	g.Add("NGCUSTOMUSER", `[a-zA-Z0-9\.\@\-\+_%]+`)
	var fast []func(string, map[string]string) (bool, bool)
	var slow []*Pattern
	for _, src := range []string{nginxAccess, nginxAccessNGUser} {
		c, err := g.Compile(src)
		if err != nil || c.fast == nil {
			f.Fatalf("%s: fast path not installed: %v", src, err)
		}
		fast, slow = append(fast, c.fast), append(slow, regexpOnly(c))
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := range fast {
			fastAgrees(t, fast[i], slow[i], s, true)
		}
	})
}

// The http-logs fast paths agree with the regexps whenever they answer.
func FuzzHTTPFastPaths(f *testing.F) {
	for _, s := range []string{
		"/", "", "/index.php", "/a/b/c.tar.gz", "/a/b.c/d", "/a/.env", "/a/b.", "/a/b/", "x.y", "noslash",
		"/a?b=c", "/a?b?c", "?", "/a/b.php?x=1/2.3", "/a\n/b.c", "/.", "//", "/a/..",
	} {
		f.Add(s)
	}
	g := New(Options{})
	for k, v := range httpDefs {
		g.Add(k, v)
	}
	var groks []*Pattern
	for _, p := range []string{httpArgsPattern, httpFilePattern} {
		c, err := g.Compile(p)
		if err != nil || c.fast == nil {
			f.Fatalf("%s: fast path not installed: %v", p, err)
		}
		groks = append(groks, c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range groks {
			fastAgrees(t, c.fast, regexpOnly(c), s, false)
		}
	})
}
