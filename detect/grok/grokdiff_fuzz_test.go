package parse

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/packaging"
)

// shippedContent extracts the content moat embeds (hub/, patterns/,
// acquis.d/) so the fuzz targets run the parsers as they ship today,
// not a copy that drifts from them.
func shippedContent(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.CopyFS(dir, packaging.Files); err != nil {
		tb.Fatalf("extract shipped content: %v", err)
	}
	return dir
}

// shippedPipeline loads every shipped parser.
func shippedPipeline(tb testing.TB) *Pipeline {
	tb.Helper()
	dir := shippedContent(tb)
	paths, err := filepath.Glob(filepath.Join(dir, "hub", "parsers", "*", "*", "*.yaml"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no shipped parsers: %v", err)
	}
	var files []File
	for _, p := range paths {
		files = append(files, File{Path: p, Stage: filepath.Base(filepath.Dir(filepath.Dir(p)))})
	}
	p, err := Load(files, Options{PatternDir: filepath.Join(dir, "patterns"), DataDir: tb.TempDir(), Year: 2026, LogTime: true})
	if err != nil {
		tb.Fatalf("load shipped parsers: %v", err)
	}
	return p
}

// groksOf collects the groks of nodes and their children.
func groksOf(ns []*node, out []*grok) []*grok {
	for _, n := range ns {
		if n.grok != nil {
			out = append(out, n.grok)
		}
		out = groksOf(n.children, out)
	}
	return out
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
func fuzzGroks(tb testing.TB) []*grok {
	tb.Helper()
	gs := groksOf(nil, nil)
	p := shippedPipeline(tb)
	for _, ns := range p.nodes {
		gs = groksOf(ns, gs)
	}
	if len(gs) == 0 {
		tb.Fatal("the shipped parsers compile no grok")
	}
	hub := newGrokLib()
	for k, v := range syslogDefs {
		hub.add(k, v)
	}
	for k, v := range nginxDefs {
		hub.add(k, v)
	}
	hub.add("IPv4_WORKAROUND", `(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)`)
	hub.add("IP_WORKAROUND", `(?:%{IPV6}|%{IPv4_WORKAROUND})`)
	http := newGrokLib()
	for k, v := range httpDefs {
		http.add(k, v)
	}
	for _, x := range []struct {
		lib *grokLib
		src string
	}{
		{hub, "^%{SYSLOGLINE}"},
		{hub, nginxAccess},
		{hub, `Invalid user\s*%{USERNAME:sshd_invalid_user}? from %{IP_WORKAROUND:sshd_client_ip}( port \d+)?`},
		{hub, `Connection (closed|reset) by( (authenticating|invalid) user %{USERNAME:u})? %{IP:ip} port \d+ \[preauth\]`},
		{hub, `from %{IPORHOST:h}`},
		{http, httpArgsPattern},
		{http, httpFilePattern},
	} {
		c, err := x.lib.compile(x.src)
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
	for _, s := range syslogSeeds {
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
		refs[i] = ref{regexp.MustCompile(c.re.String()), c.names}
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, c := range gs {
			got := map[string]string{}
			m := c.match(s, got)
			want := map[string]string{}
			mw := refMatch(refs[i].re, refs[i].names, s, want)
			if m != mw || !maps.Equal(got, want) {
				t.Fatalf("grok %.80q on %q:\n grok   %v %v\n regexp %v %v", c.re.String(), s, m, got, mw, want)
			}
		}
	})
}

// FuzzLoadParserFile loads a parser file from attacker-controlled YAML. An
// error names the file and leaves no pipeline; a pipeline that loads has
// the one stage asked for and parses lines with Parse agreeing with
// Process.
func FuzzLoadParserFile(f *testing.F) {
	dir := shippedContent(f)
	paths, _ := filepath.Glob(filepath.Join(dir, "hub", "parsers", "*", "*", "*.yaml"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("filter: 1 +\n"))
	f.Add([]byte("name: x/y\ngrok:\n  pattern: '%{NOPE:x}'\n  apply_on: message\n"))
	f.Add([]byte("name: x/y\nonsuccess: next_stage\nnodes:\n  - grok:\n      pattern: '(?P<a>a)|(?P<a>b)'\n      apply_on: Line.Raw\n"))
	patterns := filepath.Join(dir, "patterns")
	lines := []string{
		"Mar  1 00:00:00 web1 sshd[1]: Invalid user guest from 198.18.38.187 port 17744",
		`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8"`,
		"",
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load([]File{{Path: path, Stage: "s01-parse"}}, Options{PatternDir: patterns, DataDir: t.TempDir(), Year: 2026})
		if err != nil {
			if p != nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q with pipeline %v: want none, and the file named", err, p)
			}
			return
		}
		if p == nil || !slices.Equal(p.Stages(), []string{"s01-parse"}) {
			t.Fatalf("loaded pipeline %v: want stage s01-parse", p)
		}
		for _, l := range lines {
			evt := detect.NewEvent(detect.Line{Raw: l, Labels: map[string]string{"type": "syslog"}, Process: true})
			if ok := p.Parse(evt); ok != evt.Process {
				t.Fatalf("%q: Parse returned %v, Process %v", l, ok, evt.Process)
			}
		}
	})
}
