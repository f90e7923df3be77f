package exprenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

// The closures must agree with the VM on every expression and event, and
// decide the shapes hub filters are made of without it.
func TestNativeAgreesWithVM(t *testing.T) {
	e := New("testdata/data")
	for _, d := range []DataSpec{
		{DestFile: "probes.txt", Type: "string"},
		{DestFile: "cves.json", Type: "string"},
		{DestFile: "ua.regex.txt", Type: "regexp"},
		{DestFile: "tech.json", Type: "map"},
		{DestFile: "path.regex.txt", Type: "string"},
	} {
		if err := e.LoadData(d); err != nil {
			t.Fatal(err)
		}
	}
	exprs := []struct {
		src string
		// vmOn are the events the closures leave to the VM.
		vmOn []int
	}{
		{`evt.Meta.log_type in ['http_access-log', 'http_error-log'] && evt.Meta.http_status == '404'`, nil},
		{`evt.Meta.service == 'http' and not (evt.Meta.http_status in ['200'])`, nil},
		{`any(File('probes.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})`, nil},
		{`any(File('probes.txt'), {Lower(evt.Meta.http_path) contains #})`, nil},
		{`any(File('probes.txt'), {evt.Meta.http_path contains #})`, nil},
		{`any(File('probes.txt'), {evt.Parsed.file_name == #})`, nil},
		{`any(File('probes.txt'), {evt.Parsed.request endsWith #})`, nil},
		{`any(File('probes.txt'), {evt.Parsed.request startsWith #})`, nil},
		{`any(File('missing.txt'), {evt.Parsed.request contains #})`, nil},
		{`RegexpInFile(evt.Parsed.http_user_agent, "ua.regex.txt")`, nil},
		{`any(File('path.regex.txt'), {Upper(evt.Meta.http_path) matches Upper(#)})`, nil},
		{`any(File('path.regex.txt'), {Lower(evt.Meta.http_path) matches #})`, nil},
		{`Upper(evt.Meta.http_path) matches Upper(Sprintf('^/%s-[a-z]+', 'wp'))`, nil},
		{`Upper(evt.Meta.http_path) matches Upper('/wp-[a-z]+\\.php')`, nil},
		{`let p = Lower(evt.Parsed.request); p matches '/php/.*\\.js\\.map' || p contains 'select'`, nil},
		{`Upper(QueryUnescape(evt.Meta.http_path)) startsWith Upper('/etc/')`, nil},
		{`evt.Meta.source_ip + '/' + evt.Parsed.target_fqdn`, nil},
		{`evt.Meta.http_status in ['404'] ? LookupFile(evt.Meta.http_path, "tech.json") : "none"`, nil},
		{`Lower(evt.Parsed.missing) == '' && evt.Line.Labels.type == 'nginx'`, nil},
		// Side effects and unknown helpers go to the VM.
		{`any(File('cves.json'), {evt.Meta.http_path contains JsonExtract(#, "uri") ? evt.SetMeta("cve", JsonExtract(#, "cve")) : false})`, []int{3}},
		{`evt.Meta.http_status == '404' && evt.GetMeta('source_ip') != ''`, []int{0, 3}},
		{`len(evt.Meta.http_path) > 3`, []int{0, 1, 2, 3, 4}},
	}
	events := []map[string]string{
		{"log_type": "http_access-log", "http_status": "404", "service": "http", "http_path": "/wp-login.php", "file_name": "wp-login.php", "request": "/wp-login.php", "http_args": "", "http_user_agent": "curl/8", "source_ip": "192.0.2.1", "target_fqdn": "a.example"},
		{"log_type": "http_access-log", "http_status": "200", "service": "http", "http_path": "/index.php?q=1 UNION SELECT", "request": "/index.php", "http_args": "q=1 UNION SELECT", "http_user_agent": "Mozilla", "source_ip": "192.0.2.2"},
		{"log_type": "http_error-log", "http_status": "403", "http_path": "/%2E%2E/etc/passwd", "request": "/php/x/a.js.map", "http_args": "x=<SCRIPT>", "http_user_agent": "sqlmap/1"},
		{"log_type": "syslog", "http_path": "/boaform/admin/formLogin", "request": "/.env", "http_status": "404"},
		{},
	}
	for _, x := range exprs {
		p, err := e.CompileEvt(x.src, map[string]any{"evt": &detect.Event{}})
		if err != nil {
			t.Fatalf("%s: %v", x.src, err)
		}
		var m Memo
		for i, fields := range events {
			mk := func() *detect.Event {
				evt := detect.NewEvent(detect.Line{Raw: "x", Labels: map[string]string{"type": "nginx"}})
				for k, v := range fields {
					evt.Meta[k] = v
					evt.Parsed[k] = v
				}
				return evt
			}
			want, err := e.Run(p.VM, map[string]any{"evt": mk()})
			if err != nil {
				t.Fatalf("%s on event %d: VM: %v", x.src, i, err)
			}
			m.Reset()
			var got any
			var decided bool
			if _, isBool := want.(bool); isBool {
				got, decided = p.Bool(&m, mk())
			} else {
				got, decided = p.String(&m, mk())
			}
			if wantVM := slices.Contains(x.vmOn, i); decided == wantVM {
				t.Errorf("%s on event %d: decided natively = %v, want %v", x.src, i, decided, !wantVM)
			}
			if decided && got != want {
				t.Errorf("%s on event %d: native %v, VM %v", x.src, i, got, want)
			}
		}
	}
}

// A data-file list matcher finds every literal at any position.
func TestACMatcher(t *testing.T) {
	m := newACMatcher([]string{"he", "she", "his", "hers", "../"})
	for s, want := range map[string]bool{
		"ushers": true, "ahix": false, "this": true, "/a/../b": true, "..": false, "": false, "h": false, "sh": false, "xhe": true,
	} {
		if got := m.match(s); got != want {
			t.Errorf("match(%q) = %v, want %v", s, got, want)
		}
	}
	if newACMatcher(nil).match("anything") {
		t.Error("empty list matched")
	}
	// Too many bytes for an automaton: the literals are searched one by one.
	var big []string
	for i := range 20000 {
		big = append(big, fmt.Sprintf("/p%05d/", i))
	}
	m = newACMatcher(big)
	if m.scan != nil {
		t.Fatalf("%d literals of %d bytes got an automaton", len(big), 8*len(big))
	}
	for s, want := range map[string]bool{"/x/p19999/y": true, "/p1999/": false, "": false} {
		if got := m.match(s); got != want {
			t.Errorf("big list: match(%q) = %v, want %v", s, got, want)
		}
	}
}

// The byte prefilter never changes a verdict: hub lists, folded as the
// scenarios fold them, against lines made of their own pieces.
func TestACMatcherStops(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testutil.Shared(t, "crowdsec-hub/data/web"), "*.txt"))
	if len(files) == 0 {
		t.Fatal("no hub data files")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	withStops, hits, misses := 0, 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var lits []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				lits = append(lits, strings.ToUpper(l))
			}
		}
		m := newACMatcher(lits)
		if len(m.stops) > 0 {
			withStops++
		}
		for range 3000 {
			var sb strings.Builder
			for range rng.IntN(4) {
				l := lits[rng.IntN(len(lits))]
				i := rng.IntN(len(l) + 1)
				j := i + rng.IntN(len(l)-i+1)
				sb.WriteString(l[i:j])
				sb.WriteString("/INDEX.PHP?A=1 MOZILLA/5.0"[:rng.IntN(27)])
			}
			in := sb.String()
			want := slices.ContainsFunc(lits, func(l string) bool { return strings.Contains(in, l) })
			if got := m.match(in); got != want {
				t.Fatalf("%s: match(%q) = %v, want %v (stops %q)", filepath.Base(f), in, got, want, m.stops)
			}
			if want {
				hits++
			} else {
				misses++
			}
		}
	}
	if withStops == 0 || hits == 0 || misses == 0 {
		t.Fatalf("%d lists with a byte prefilter, %d matching and %d other lines: the test tests nothing", withStops, hits, misses)
	}
	t.Logf("%d of %d lists with a byte prefilter; %d matching, %d other lines", withStops, len(files), hits, misses)
}

// Regexps whose literal is absent are skipped; the verdict never changes.
func TestRegexpPrefilter(t *testing.T) {
	res := []*regexp.Regexp{
		regexp.MustCompile(`\bsqlmap\b`),
		regexp.MustCompile(`(?i)nikto`),
		regexp.MustCompile(`^Go-http-client/(1|2)\.`),
		regexp.MustCompile(`x+ybot`),
	}
	for _, c := range []struct {
		rx, lit string
	}{{`\bsqlmap\b`, "sqlmap"}, {`(?i)nikto`, ""}, {`^Go-http-client/(1|2)\.`, "Go-http-client/"}, {`x+ybot`, "ybot"}, {`a|bcd`, ""}} {
		if got := requiredLiteral(c.rx); got != c.lit {
			t.Errorf("requiredLiteral(%q) = %q, want %q", c.rx, got, c.lit)
		}
	}
	p := newRegexpPrefilter(res)
	for _, s := range []string{"sqlmap/1.0", "Mozilla NIKTO", "Go-http-client/1.1", "xxybot", "Mozilla/5.0", "sqlmapper", ""} {
		want := false
		for _, re := range res {
			want = want || re.MatchString(s)
		}
		got := false
		for _, re := range p.candidates(s, res) {
			got = got || re.MatchString(s)
		}
		if got != want {
			t.Errorf("%q: prefiltered %v, all regexps %v", s, got, want)
		}
	}
	if n := len(p.candidates("Mozilla/5.0", res)); n != 1 {
		t.Errorf("Mozilla/5.0 runs %d regexps, want only the one without a literal", n)
	}
}
