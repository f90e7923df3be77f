package parse

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
)

func testPipeline(t *testing.T) *Pipeline {
	t.Helper()
	p, err := Load([]File{
		{Path: "testdata/parsers/raw.yaml", Stage: "s00-raw"},
		{Path: "testdata/parsers/app.yaml", Stage: "s01-parse"},
		{Path: "testdata/parsers/wl.yaml", Stage: "s02-enrich"},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNodes(t *testing.T) {
	p := testPipeline(t)
	tests := []struct {
		line        string
		parsed      bool
		meta        map[string]string
		whitelisted bool
	}{
		{"app: login failed for bob from 203.0.113.9", true, map[string]string{"log_type": "app_failed", "source_ip": "203.0.113.9", "user": "BOB", "datasource_path": "demo.log"}, false},
		{"app: login ok for alice from 2001:db8::2", true, map[string]string{"log_type": "app_ok", "source_ip": "2001:db8::2", "user": "ALICE", "datasource_path": "demo.log"}, false},
		{"app: login failed for eve from 198.18.0.4", true, nil, true},
		{"app: login failed for root from 203.0.113.1", true, nil, true},
		{"app: something else", false, nil, false},
		{"other: login failed for bob from 203.0.113.9", false, nil, false},
		{"no colon here", false, nil, false},
	}
	for _, tt := range tests {
		evt := detect.NewEvent(detect.Line{Raw: tt.line, Src: "demo.log", Labels: map[string]string{"type": "demo"}})
		var tr Trace
		ok := p.ParseTrace(evt, &tr)
		if ok != tt.parsed || evt.Whitelisted != tt.whitelisted {
			t.Errorf("%q: parsed %v whitelisted %v, want %v %v", tt.line, ok, evt.Whitelisted, tt.parsed, tt.whitelisted)
			continue
		}
		for k, v := range tt.meta {
			if evt.Meta[k] != v {
				t.Errorf("%q: meta %s = %q, want %q", tt.line, k, evt.Meta[k], v)
			}
		}
		if len(tr.Results) == 0 || tr.Results[0].Parser != "test/raw" || tr.Results[0].Idx != 1 {
			t.Errorf("%q: trace %+v", tt.line, tr.Results)
		}
	}
	st := p.Stats()
	if len(st) != 3 || st[1].Parser != "test/app" || st[1].Parsed != 4 {
		t.Errorf("stats %+v", st)
	}
}

// Siblings that fail without writing share one read of their grok's
// input; a sibling that writes it makes the next ones read it again.
func TestSiblingsReadRewrittenInput(t *testing.T) {
	p, err := Load([]File{{Path: "testdata/parsers/siblings.yaml", Stage: "s01-parse"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	evt := detect.NewEvent(detect.Line{Raw: "first pass", Labels: map[string]string{"type": "siblings"}})
	if !p.Parse(evt) {
		t.Fatal("not parsed")
	}
	if got := evt.Meta["seen"]; got != "pass" {
		t.Errorf("the third sibling saw %q, want the rewritten input (seen = %q)", evt.Parsed["message"], got)
	}
}

func TestYAMLErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "sshd-logs.yaml")
	if err := os.WriteFile(broken, []byte("name: moat/sshd-logs\nfilter: \"evt.Parsed.program == 'sshd'\"\nnodes:\n  - grok: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		unknown bool
		want    *regexp.Regexp
	}{
		{"testdata/parsers/unknown.bad.yaml", true, regexp.MustCompile(`^testdata/parsers/unknown\.bad\.yaml:6: unknown key "`)},
		{broken, false, regexp.MustCompile(`^` + regexp.QuoteMeta(broken) + `:\d+: `)},
	}
	for _, tt := range tests {
		_, err := Load([]File{{Path: tt.path, Stage: "s00-raw"}}, Options{})
		if err == nil || !tt.want.MatchString(err.Error()) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line matching %s", tt.path, err, tt.want)
			continue
		}
		if errors.Is(err, ErrUnknownField) != tt.unknown {
			t.Errorf("%s: errors.Is(err, ErrUnknownField) = %v, want %v", tt.path, !tt.unknown, tt.unknown)
		}
	}
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in, layout string
		year       int
		want       string
	}{
		{"Mar  1 00:00:00", "", 2026, "2026-03-01T00:00:00Z"},
		{"Feb 12 14:10:21", "", 2024, "2024-02-12T14:10:21Z"},
		{"29/Sep/2021:17:29:58 +0200", "", 0, "2021-09-29T17:29:58+02:00"},
		{"2022-02-16T12:24:19+02:00", "", 0, "2022-02-16T12:24:19+02:00"},
		{"2023-01-02 03:04:05", "", 0, "2023-01-02T03:04:05Z"},
		{"1684329817.579", "", 0, "2023-05-17T13:23:37Z"},
		{"02/01/2023 10:00", "02/01/2006 15:04", 0, "2023-01-02T10:00:00Z"},
	}
	for _, tt := range tests {
		got, ok := ParseDate(tt.in, tt.layout, tt.year)
		b, _ := got.MarshalText()
		if !ok || string(b) != tt.want {
			t.Errorf("ParseDate(%q) = %s %v, want %s", tt.in, b, ok, tt.want)
		}
	}
	if _, ok := ParseDate("not a date", "", 0); ok {
		t.Error("garbage parsed as a date")
	}
}

// The syslog date fast path gives what time.Parse gives, or declines.
func TestSyslogDateFastPath(t *testing.T) {
	var in []string
	for _, m := range []string{"Jan", "Feb", "Mar", "Apr", "Jun", "Sep", "Dec", "MAR", "Foo"} {
		for _, d := range []string{" 1", "01", " 9", "28", "29", "30", "31", "32", " 0", "00", "1 "} {
			for _, hms := range []string{"00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", " 1:02:03", "01:2 :03"} {
				in = append(in, m+" "+d+" "+hms)
			}
		}
	}
	answered := 0
	for _, s := range in {
		got, ok := parseSyslogDate(s)
		want, err := time.Parse(syslogLayout, s)
		if !ok {
			continue
		}
		answered++
		if err != nil || !got.Equal(want) || got.Location() != want.Location() {
			t.Errorf("%q: fast %v, time.Parse %v %v", s, got, want, err)
		}
	}
	if answered < 80 {
		t.Errorf("fast path answered %d of %d dates", answered, len(in))
	}
}

// TestDateparseRepeatsAndFallback: a timestamp text repeated from the line
// before gives the same time, and a text no format reads gives each line
// its own read time, in UTC, as CrowdSec's dateparse does.
func TestDateparseRepeatsAndFallback(t *testing.T) {
	p := &Pipeline{}
	parse := func(text string, readAt time.Time) *detect.Event {
		evt := detect.NewEvent(detect.Line{ReadAt: readAt})
		enrichParseDate(&run{p: p, evt: evt}, text)
		return evt
	}
	read := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 2 {
		evt := parse("2026-03-01T10:00:00Z", read.Add(time.Duration(i)*time.Second))
		if got := evt.Enriched["MarshaledTime"]; got != "2026-03-01T10:00:00Z" || !evt.Time.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("line %d: MarshaledTime %q, Time %v", i, got, evt.Time)
		}
	}
	zone := time.FixedZone("UTC+2", 2*3600)
	for i := range 2 {
		at := time.Date(2026, 3, 1, 14, 0, i, 0, zone)
		evt := parse("not a date", at)
		want := at.UTC()
		if evt.Time != want || evt.Enriched["MarshaledTime"] != want.Format(time.RFC3339Nano) {
			t.Fatalf("line %d: Time %v, MarshaledTime %q; want %v", i, evt.Time, evt.Enriched["MarshaledTime"], want)
		}
	}
}

// Statics read without the VM give what the VM gives.
func TestStaticGettersMatchVM(t *testing.T) {
	env := exprenv.New("")
	evt := detect.NewEvent(detect.Line{Raw: "x", Src: "a.log"})
	evt.Parsed["args"] = "q=héllo&x=%00"
	evt.Parsed["empty"] = ""
	evt.Meta["path"] = "/wp-login.php"
	vars := map[string]any{"evt": evt}
	for _, src := range []string{
		"evt.Parsed.args", "evt.Meta.path", "evt.Line.Src", "evt.Parsed.missing",
		"len(evt.Parsed.args)", "len(evt.Parsed.empty)", "len(evt.Parsed.missing)", "len(evt.Meta.path)", " len(evt.Line.Raw) ",
	} {
		get := fieldGetter(src)
		if get == nil {
			get = lenGetter(src)
		}
		if get == nil {
			t.Errorf("%q: no getter", src)
			continue
		}
		prog, err := env.Compile(src, vars)
		if err != nil {
			t.Fatal(err)
		}
		out, err := env.Run(prog, vars)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := get(evt), fmt.Sprint(out); got != want {
			t.Errorf("%q: getter %q, VM %q", src, got, want)
		}
	}
	for _, src := range []string{"len(evt.Parsed)", "len(evt.Parsed.a) + len(evt.Parsed.b)", "len(evt.Parsed.a", "lenx(evt.Parsed.a)"} {
		if lenGetter(src) != nil {
			t.Errorf("%q: a len getter for what is not len of one field", src)
		}
	}
}

// withoutRuns clears the sibling runs of ns and their children, so that
// every child is tried in turn.
func withoutRuns(ns []*node) {
	for _, n := range ns {
		n.runs = nil
		withoutRuns(n.children)
	}
}

// Skipping the sibling groks a scan rules out changes no event: the
// hub's sshd parser, on the hub's sshd test logs and on messages made of
// its patterns' literals in every pairing, gives the same verdicts,
// fields and stages with the scan and without.
func TestSiblingRunsChangeNothing(t *testing.T) {
	root := sharedHub(t)
	files := []File{
		{Path: filepath.Join(root, "hub/parsers/s00-raw/crowdsecurity/syslog-logs.yaml"), Stage: "s00-raw"},
		{Path: filepath.Join(root, "hub/parsers/s01-parse/crowdsecurity/sshd-logs.yaml"), Stage: "s01-parse"},
	}
	opts := Options{PatternDir: filepath.Join(root, "patterns"), DataDir: filepath.Join(root, "data")}
	scan, plain := mustLoad(t, files, opts), mustLoad(t, files, opts)
	for _, ns := range plain.nodes {
		withoutRuns(ns)
	}
	sshd := scan.nodes[1][0]
	if len(sshd.runs) == 0 {
		t.Fatal("the sshd parser's sibling groks get no scan")
	}
	logs, lines := readLogs(t, filepath.Join(root, "hub/.tests/ssh*/*.log"))
	var lits []string
	for _, c := range sshd.children {
		lits = append(lits, c.grok.Literals()...)
	}
	const prefix = "Dec  7 03:14:15 host sshd[42]: "
	for _, a := range lits {
		for _, b := range lits {
			lines = append(lines, prefix+a+"bob"+b+"198.18.0.1 port 22", prefix+b+" "+a+" 198.18.0.2")
		}
	}
	if logs == 0 || len(lines) < 1000 {
		t.Fatalf("%d test logs, %d lines: too little to compare on", logs, len(lines))
	}
	sameEvents(t, "the scan", scan, plain, "syslog", lines)
}

// readLogs returns how many files match pattern and their lines.
func readLogs(t *testing.T, pattern string) (files int, lines []string) {
	t.Helper()
	logs, _ := filepath.Glob(pattern)
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	return len(logs), lines
}

func mustLoad(t *testing.T, files []File, opts Options) *Pipeline {
	t.Helper()
	p, err := Load(files, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sameEvents parses each line with a pipeline that has what (an
// optimisation) and one without, and fails at the first line on which
// their verdicts, stages, parsed or meta fields differ, or when no line
// became an event with a log_type (a comparison without a match).
func sameEvents(t *testing.T, what string, with, without *Pipeline, typ string, lines []string) {
	t.Helper()
	parsed := 0
	for _, l := range lines {
		line := detect.Line{Raw: l, Labels: map[string]string{"type": typ}}
		a, b := detect.NewEvent(line), detect.NewEvent(line)
		okA, okB := with.Parse(a), without.Parse(b)
		if okA != okB || a.Stage != b.Stage || !maps.Equal(a.Parsed, b.Parsed) || !maps.Equal(a.Meta, b.Meta) {
			t.Fatalf("%s %q:\nwith %s    %v %s %v %v\nwithout %s %v %s %v %v", typ, l, what, okA, a.Stage, a.Parsed, a.Meta, what, okB, b.Stage, b.Parsed, b.Meta)
		}
		if okA && a.Meta["log_type"] != "" {
			parsed++
		}
	}
	t.Logf("%s: %d lines, %d events with a log_type", typ, len(lines), parsed)
	if parsed == 0 {
		t.Errorf("%s: no line parsed as an event with a log_type: the comparison saw no match", typ)
	}
}
