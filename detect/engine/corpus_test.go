package engine

import (
	"encoding/json"
	"iter"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/grok"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// shared is ../shared beside the repository root.
func shared(tb testing.TB) string {
	tb.Helper()
	testutil.Shared(tb, "crowdsec-hub/hub")
	testutil.Shared(tb, "corpus/gen-corpus")
	return testutil.Shared(tb, ".")
}

func hubConfig(dir string, items ...string) Config {
	return Config{
		HubDir:     filepath.Join(dir, "crowdsec-hub/hub"),
		PatternDir: filepath.Join(dir, "crowdsec-hub/patterns"),
		DataDir:    filepath.Join(dir, "crowdsec-hub/data"),
		Items:      items,
		Replay:     true,
	}
}

// corpus generates a corpus into a temp dir and returns the dir and the
// year its first line was written in.
func corpus(tb testing.TB, dir string, args ...string) (string, int) {
	tb.Helper()
	out := tb.TempDir()
	cmd := exec.Command(filepath.Join(dir, "corpus/gen-corpus"), append(args, out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("gen-corpus: %v\n%s", err, b)
	}
	var meta struct {
		Start float64 `json:"start_epoch"`
	}
	b, err := os.ReadFile(filepath.Join(out, "meta.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		tb.Fatal(err)
	}
	return out, time.Unix(int64(meta.Start), 0).UTC().Year()
}

// corpusLines is a log file held as one string and line ends: lines are
// cut from it as they are processed, as a source would read them, so the
// garbage collector does not trace a million held lines (which a daemon
// never holds) on every cycle of a replay.
type corpusLines struct {
	data string
	ends []int
	line detect.Line // Src, Module, Labels, Process
}

// readLines maps the file outside the Go heap: in the heap, a corpus of a
// hundred megabytes would count as live data and set the collector's pace,
// which a daemon reading line by line never has.
func readLines(tb testing.TB, path, typ string) corpusLines {
	tb.Helper()
	b := mapFile(tb, path)
	c := corpusLines{
		data: unsafe.String(unsafe.SliceData(b), len(b)),
		line: detect.Line{Src: path, Module: "file", Labels: map[string]string{"type": typ}, Process: true},
	}
	for i, ch := range b {
		if ch == '\n' {
			c.ends = append(c.ends, i)
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		c.ends = append(c.ends, len(b))
	}
	return c
}

func mapFile(tb testing.TB, path string) []byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Size() == 0 {
		return nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
	if err != nil {
		tb.Fatalf("map %s: %v", path, err)
	}
	tb.Cleanup(func() { syscall.Munmap(b) })
	return b
}

func (c corpusLines) Len() int { return len(c.ends) }

// At returns line i.
func (c corpusLines) At(i int) detect.Line {
	start := 0
	if i > 0 {
		start = c.ends[i-1] + 1
	}
	l := c.line
	l.Raw = strings.TrimSuffix(c.data[start:c.ends[i]], "\r")
	return l
}

// All yields the lines in order.
func (c corpusLines) All() iter.Seq[detect.Line] {
	return func(yield func(detect.Line) bool) {
		for i := range c.ends {
			if !yield(c.At(i)) {
				return
			}
		}
	}
}

type truthRow struct {
	class string
	ban   bool
}

func readTruth(tb testing.TB, path, log string) map[string]truthRow {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]truthRow{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if i == 0 || len(f) < 4 || f[0] != log {
			continue
		}
		out[f[1]] = truthRow{class: f[2], ban: f[3] == "yes"}
	}
	return out
}

// verdict compares alerted sources (value -> scenario) with truth: the
// sources to ban that were caught or missed, and benign sources banned.
type verdict struct {
	caught            int
	missed, falseBans []string
}

func judge(truth map[string]truthRow, alerted map[string]string) verdict {
	var v verdict
	for ip, row := range truth {
		_, got := alerted[ip]
		switch {
		case row.ban && got:
			v.caught++
		case row.ban:
			v.missed = append(v.missed, ip)
		case got && strings.HasPrefix(row.class, "benign"):
			v.falseBans = append(v.falseBans, ip)
		}
	}
	return v
}

// The sshd collection catches every source the corpus says must be banned
// and bans no benign one.
func TestCorpusSSH(t *testing.T) {
	dir := shared(t)
	out, year := corpus(t, dir, "--ssh-lines", "20000", "--nginx-lines", "10", "--seed", "7")
	cfg := hubConfig(dir, "crowdsecurity/linux")
	cfg.Year = year
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	alerted := map[string]string{}
	failures, failuresParsed := 0, 0
	for l := range readLines(t, filepath.Join(out, "auth.log"), "syslog").All() {
		if strings.Contains(l.Raw, "Failed password for") || strings.Contains(l.Raw, "Invalid user") {
			failures++
			if evt := detect.NewEvent(l); e.pipe.Parse(evt) && evt.Meta["log_type"] == "ssh_failed-auth" {
				failuresParsed++
			}
		}
		for _, a := range e.Process(l) {
			alerted[a.Value] = a.Scenario
		}
	}
	for _, a := range e.Flush() {
		alerted[a.Value] = a.Scenario
	}
	truth := readTruth(t, filepath.Join(out, "truth.tsv"), "auth.log")
	v := judge(truth, alerted)
	for _, ip := range v.missed {
		t.Errorf("missed %s (%s)", ip, truth[ip].class)
	}
	for _, ip := range v.falseBans {
		t.Errorf("false ban of %s (%s) by %s", ip, truth[ip].class, alerted[ip])
	}
	st := e.Stats()
	t.Logf("caught %d, missed %d, false bans %d; lines %d parsed %d unparsed %d", v.caught, len(v.missed), len(v.falseBans), st.Lines, st.Parsed, st.Unparsed)
	if v.caught == 0 {
		t.Fatal("no source caught")
	}
	if failures == 0 || failuresParsed != failures {
		t.Errorf("parsed %d of %d failed-auth lines as ssh_failed-auth", failuresParsed, failures)
	}
}

// The base HTTP scenarios catch the sources the corpus says must be banned
// in the nginx access log and ban no benign one (crawlers included). The
// hub's own rules leave some out, as they do in CrowdSec: a bad user agent
// no regexp of bad_user_agents.regex.txt matches (they are case-sensitive:
// \bSqlmap\b), or one seen once (the leaky bucket has capacity 1).
func TestCorpusNginx(t *testing.T) {
	dir := shared(t)
	out, year := corpus(t, dir, "--ssh-lines", "10", "--nginx-lines", "20000", "--seed", "7")
	cfg := hubConfig(dir, append(nginxItems, "crowdsecurity/base-http-scenarios")...)
	cfg.Year = year
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	alerted := map[string]string{}
	uas := map[string][]string{} // source -> user agent of each request
	for l := range readLines(t, filepath.Join(out, "access.log"), "nginx").All() {
		ip, _, _ := strings.Cut(l.Raw, " ")
		if i := strings.LastIndex(strings.TrimSuffix(l.Raw, `"`), `"`); i >= 0 {
			uas[ip] = append(uas[ip], strings.TrimSuffix(l.Raw[i+1:], `"`))
		}
		for _, a := range e.Process(l) {
			alerted[a.Value] = a.Scenario
		}
	}
	for _, a := range e.Flush() {
		alerted[a.Value] = a.Scenario
	}
	badUA, err := e.Env().Compile(`RegexpInFile(ua, "bad_user_agents.regex.txt")`, map[string]any{"ua": ""})
	if err != nil {
		t.Fatal(err)
	}
	hubMisses := func(ip string) bool {
		hits := 0
		for _, ua := range uas[ip] {
			if ok, err := e.Env().RunBool(badUA, map[string]any{"ua": ua}); err == nil && ok {
				hits++
			}
		}
		return hits < 2
	}
	truth := readTruth(t, filepath.Join(out, "truth.tsv"), "access.log")
	v := judge(truth, alerted)
	for _, ip := range v.missed {
		if truth[ip].class != "http-bad-ua" || !hubMisses(ip) {
			t.Errorf("missed %s (%s)", ip, truth[ip].class)
		}
	}
	for _, ip := range v.falseBans {
		t.Errorf("false ban of %s (%s) by %s", ip, truth[ip].class, alerted[ip])
	}
	st := e.Stats()
	t.Logf("caught %d, missed %d (by the hub's rules), false bans %d; lines %d parsed %d unparsed %d", v.caught, len(v.missed), len(v.falseBans), st.Lines, st.Parsed, st.Unparsed)
	if v.caught == 0 {
		t.Fatal("no source caught")
	}
	if st.Unparsed != 0 {
		t.Errorf("%d access log lines unparsed", st.Unparsed)
	}
}

func TestExplain(t *testing.T) {
	dir := shared(t)
	e, err := New(hubConfig(dir, "crowdsecurity/syslog-logs", "crowdsecurity/sshd-logs", "crowdsecurity/dateparse-enrich"))
	if err != nil {
		t.Fatal(err)
	}
	x := e.Explain(detect.Line{
		Raw:    "Mar  1 00:00:00 web1 sshd[3095632]: Invalid user guest from 198.18.38.187 port 17744",
		Labels: map[string]string{"type": "syslog"},
	})
	if !x.Parsed || x.Event.Meta["source_ip"] != "198.18.38.187" || x.Event.Meta["log_type"] != "ssh_failed-auth" {
		t.Fatalf("explain: parsed=%v meta=%v", x.Parsed, x.Event.Meta)
	}
	var stages []string
	found := false
	for _, s := range x.Stages {
		stages = append(stages, s.Stage)
		for _, n := range s.Nodes {
			if s.Stage == "s01-parse" && n.Parser == "crowdsecurity/sshd-logs" && n.Success && n.Set["Meta.source_ip"] == "198.18.38.187" {
				found = true
			}
		}
	}
	if strings.Join(stages, ",") != "s00-raw,s01-parse,s02-enrich" || !found {
		t.Errorf("stages %v, sshd-logs node setting source_ip found: %v", stages, found)
	}
	// The syslog line is split by the hand-written matcher of ^%{SYSLOGLINE}.
	if raw := x.Stages[0].Nodes; len(raw) == 0 || !slices.Contains(raw[0].Groks, GrokExplanation{Pattern: "^%{SYSLOGLINE}", Tier: "fast", Served: "fast"}) {
		t.Errorf("s00-raw groks: %+v, want ^%%{SYSLOGLINE} served by the fast tier", raw)
	}
	if ts := x.Event.Meta["timestamp"]; !strings.HasSuffix(ts, "-03-01T00:00:00Z") {
		t.Errorf("timestamp meta = %q", ts)
	}
	x = e.Explain(detect.Line{Raw: "garbage " + strconv.Itoa(42), Labels: map[string]string{"type": "syslog"}})
	if x.Parsed {
		t.Error("a garbage line parsed")
	}
}

// An empty selection loads every parser, scenario and postoverflow of the
// hub (bar the AppSec parser, which needs an engine moat does not have).
func TestLoadWholeHub(t *testing.T) {
	dir := shared(t)
	e, err := New(hubConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if len(st.Parsers) < 150 || len(st.Postoverflows) == 0 || len(e.set.Names()) < 300 {
		t.Errorf("loaded %d parser nodes, %d postoverflow nodes, %d scenarios", len(st.Parsers), len(st.Postoverflows), len(e.set.Names()))
	}
	// syslog, nginx access and http-logs' two path splits.
	if g := st.GrokPatterns; g[grok.Fast] < 4 || g[grok.Backtrack] < 200 || g[grok.Fast]+g[grok.Backtrack]+g[grok.Regexp] < 250 {
		t.Errorf("grok patterns per tier: %v", g)
	}
	sk := e.Skipped()
	for _, err := range sk {
		t.Logf("skipped: %v", err)
	}
	if len(sk) == 0 || len(sk) > 10 {
		t.Errorf("%d items skipped, want the AppSec parser and the few overflow-fed scenarios", len(sk))
	}
}

// Process reuses events no bucket holds any more, and the parsed fields
// of events buckets hold only for their meta; what comes out must be what
// fresh events give (ProcessTrace never reuses).
func TestProcessReuseMatchesFresh(t *testing.T) {
	dir := shared(t)
	out, year := corpus(t, dir, "--ssh-lines", "5000", "--nginx-lines", "5000", "--seed", "3")
	// A conditional scenario reads the parsed fields of the events its
	// buckets hold: those must be kept whole.
	whole := filepath.Join(t.TempDir(), "whole-queue.yaml")
	if err := os.WriteFile(whole, []byte(`type: conditional
name: test/whole-queue
description: "reads the parsed fields of held events"
filter: "evt.Meta.log_type == 'ssh_failed-auth'"
groupby: evt.Meta.source_ip
capacity: -1
leakspeed: 1m
condition: len(queue.Queue) >= 3 && queue.Queue[0].Parsed.sshd_client_ip != "" && queue.Queue[1].Parsed.sshd_client_ip == queue.Queue[0].Parsed.sshd_client_ip
blackhole: 1m
labels:
  remediation: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, typ string
		items     []string
		extra     string // a scenario file added to the items
	}{
		{"auth.log", "syslog", []string{"crowdsecurity/linux"}, ""},
		{"auth.log", "syslog", []string{"crowdsecurity/linux"}, whole},
		{"access.log", "nginx", append(nginxItems, "crowdsecurity/base-http-scenarios"), ""},
	} {
		cfg := hubConfig(dir, c.items...)
		cfg.Year = year
		if c.extra != "" {
			h, err := hub.Open(cfg.HubDir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Selection, err = h.Select(c.items); err != nil {
				t.Fatal(err)
			}
			cfg.Selection.Scenarios = append(cfg.Selection.Scenarios, c.extra)
		}
		reused, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []model.Alert
		for l := range readLines(t, filepath.Join(out, c.file), c.typ).All() {
			got = append(got, reused.Process(l)...)
			_, ovs := fresh.ProcessTrace(l, nil)
			want = append(want, alertsOf(ovs)...)
		}
		got = append(got, reused.Flush()...)
		want = append(want, fresh.Flush()...)
		if c.extra != "" && !slices.ContainsFunc(want, func(a model.Alert) bool { return a.Scenario == "test/whole-queue" }) {
			t.Fatalf("%s: test/whole-queue never fired", c.extra)
		}
		if len(want) == 0 {
			t.Fatalf("%s: no alerts to compare", c.file)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%s %s: alerts with reused events differ (-fresh +reused):\n%s", c.file, c.extra, diff)
		}
	}
}
