package engine

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/internal/model"
)

// lineAlerts is the alerts of one line, by its index in the input.
type lineAlerts struct {
	Line   int
	Alerts []model.Alert
}

// serialRun is the reference: Process line by line, then Flush.
func serialRun(t *testing.T, cfg Config, lines []detect.Line) ([]lineAlerts, Stats) {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []lineAlerts
	for i, l := range lines {
		if a := e.Process(l); len(a) > 0 {
			out = append(out, lineAlerts{i, a})
		}
	}
	if a := e.Flush(); len(a) > 0 {
		out = append(out, lineAlerts{len(lines), a})
	}
	return out, e.Stats()
}

// parallelRun is Run with workers parse workers, then Flush.
func parallelRun(t *testing.T, cfg Config, lines []detect.Line, workers int) ([]lineAlerts, Stats) {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan detect.Line, 1024)
	go func() {
		defer close(in)
		for _, l := range lines {
			in <- l
		}
	}()
	var out []lineAlerts
	i := 0
	err = e.Run(context.Background(), in, workers, func(l detect.Line, a []model.Alert) {
		if l.Raw != lines[i].Raw {
			t.Fatalf("line %d emitted as %q, want %q", i, l.Raw, lines[i].Raw)
		}
		if len(a) > 0 {
			out = append(out, lineAlerts{i, a})
		}
		i++
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != len(lines) {
		t.Fatalf("emitted %d lines of %d", i, len(lines))
	}
	if a := e.Flush(); len(a) > 0 {
		out = append(out, lineAlerts{len(lines), a})
	}
	return out, e.Stats()
}

// sameAsSerial runs lines through 1 and n workers and requires the same
// alerts, on the same lines, in the same order, and the same counters.
func sameAsSerial(t *testing.T, name string, cfg Config, lines []detect.Line, n int) int {
	t.Helper()
	want, wst := serialRun(t, cfg, lines)
	got, gst := parallelRun(t, cfg, lines, n)
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("%s: alerts with %d workers differ (-serial +parallel):\n%s", name, n, diff)
	}
	// Node counters are shared by the workers: sums, the same in any order.
	if diff := cmp.Diff(wst, gst, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: stats with %d workers differ (-serial +parallel):\n%s", name, n, diff)
	}
	total := 0
	for _, la := range want {
		total += len(la.Alerts)
	}
	return total
}

func allLines(c corpusLines) []detect.Line { return slices.Collect(c.All()) }

// TestRunParallelMatchesSerial: the generated sshd and nginx corpora give
// the same alerts, in the same order, through parse workers as line by
// line.
func TestRunParallelMatchesSerial(t *testing.T) {
	dir := shared(t)
	ssh, nginx := "200k", "50k"
	if testing.Short() {
		ssh, nginx = "20000", "5000"
	}
	out, year := corpus(t, dir, "--ssh-lines", ssh, "--nginx-lines", nginx, "--seed", "5")
	for _, c := range []struct {
		file, typ string
		items     []string
	}{
		{"auth.log", "syslog", append(sshItems, "crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf")},
		{"auth.log", "syslog", []string{"crowdsecurity/linux"}},
		{"access.log", "nginx", append(nginxItems, "crowdsecurity/base-http-scenarios")},
	} {
		cfg := hubConfig(dir, c.items...)
		cfg.Year = year
		lines := allLines(readLines(t, filepath.Join(out, c.file), c.typ))
		// A line not to process goes through in its place.
		lines[len(lines)/2].Process = false
		for _, n := range []int{2, 4} {
			if alerts := sameAsSerial(t, c.file, cfg, lines, n); alerts == 0 {
				t.Fatalf("%s: no alerts to compare", c.file)
			}
		}
	}
}

// TestRunParallelHubTests: every hub test's log and content give the same
// alerts through parse workers as line by line.
func TestRunParallelHubTests(t *testing.T) {
	dir := shared(t)
	hubDir := filepath.Join(dir, "crowdsec-hub/hub")
	h, err := hub.Open(hubDir)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := filepath.Glob(filepath.Join(hubDir, ".tests", "*", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	compared, serial := 0, 0
	for _, cf := range cfgs {
		sel, lines := hubTestCase(t, h, cf)
		if sel == nil || len(lines) == 0 {
			continue
		}
		cfg := hubConfig(dir)
		cfg.Selection, cfg.Views, cfg.Year = sel, true, 2024
		e, err := New(cfg)
		if err != nil {
			continue // a test of content moat does not load
		}
		if e.Workers(4) == 1 {
			serial++
		}
		sameAsSerial(t, filepath.Base(filepath.Dir(cf)), cfg, lines, 4)
		compared++
	}
	t.Logf("%d hub tests compared, %d of them kept to one worker (cross-event parser state)", compared, serial)
	if compared < 100 {
		t.Fatalf("only %d hub tests compared", compared)
	}
}

// hubTestCase reads a hub test's selection and log lines.
func hubTestCase(t *testing.T, h *hub.Hub, cf string) (*hub.Selection, []detect.Line) {
	raw, err := os.ReadFile(cf)
	if err != nil {
		t.Fatal(err)
	}
	var tc struct {
		Parsers, Scenarios, Postoverflows []string
		LogFile                           string `yaml:"log_file"`
		LogType                           string `yaml:"log_type"`
	}
	if yaml.Unmarshal(raw, &tc) != nil || tc.LogFile == "" || tc.LogType == "" {
		return nil, nil
	}
	sel := &hub.Selection{}
	for _, p := range tc.Parsers {
		it, err := h.Ref(hub.Parsers, p)
		if err != nil {
			return nil, nil
		}
		sel.Parsers = append(sel.Parsers, parse.File{Path: it.Path, Stage: it.Stage})
	}
	for _, p := range tc.Postoverflows {
		if it, err := h.Ref(hub.Postoverflows, p); err == nil && p != "" {
			sel.Postoverflows = append(sel.Postoverflows, parse.File{Path: it.Path, Stage: it.Stage})
		}
	}
	for _, s := range tc.Scenarios {
		if it, err := h.Ref(hub.Scenarios, s); err == nil && s != "" {
			sel.Scenarios = append(sel.Scenarios, it.Path)
		}
	}
	lines := fileLines(t, filepath.Join(filepath.Dir(cf), tc.LogFile), tc.LogType)
	// A read time, as hubtest gives, so that dates no format reads do
	// not take the clock's (which differs between two runs).
	for i := range lines {
		lines[i].ReadAt = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return sel, lines
}

// TestWorkersStash: a parser that stashes keeps the pipeline to one
// worker, since a later line may read what an earlier one stashed.
func TestWorkersStash(t *testing.T) {
	dir := shared(t)
	e, err := New(hubConfig(dir, "crowdsecurity/syslog-logs", "crowdsecurity/dateparse-enrich"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Workers(4); got != 4 {
		t.Errorf("syslog parsers: Workers(4) = %d, want 4", got)
	}
	if got := e.Workers(0); got != 1 {
		t.Errorf("Workers(0) = %d, want 1", got)
	}
	h, err := hub.Open(filepath.Join(dir, "crowdsec-hub/hub"))
	if err != nil {
		t.Fatal(err)
	}
	it, err := h.Ref(hub.Parsers, "crowdsecurity/auditd-logs")
	if err != nil {
		t.Fatal(err)
	}
	cfg := hubConfig(dir)
	cfg.Selection = &hub.Selection{Parsers: []parse.File{{Path: it.Path, Stage: it.Stage}}}
	if e, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if got := e.Workers(4); got != 1 {
		t.Errorf("auditd-logs (stash): Workers(4) = %d, want 1", got)
	}
}

// TestRunParallelLoneLines: a line that arrives alone (a live source) is
// parsed and emitted without waiting for more, and a cancelled Run ends.
func TestRunParallelLoneLines(t *testing.T) {
	dir := shared(t)
	e, err := New(hubConfig(dir, append(sshItems, "crowdsecurity/ssh-bf")...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan detect.Line)
	emitted := make(chan detect.Line, 1)
	ran := make(chan error, 1)
	go func() {
		ran <- e.Run(ctx, in, 2, func(l detect.Line, _ []model.Alert) { emitted <- l })
	}()
	for i := range 5 {
		l := detect.Line{Raw: "Mar  1 10:00:0" + strconv.Itoa(i) + " host sshd[1]: Invalid user x from 192.0.2.1 port 22", Labels: map[string]string{"type": "syslog"}, Process: true}
		in <- l
		select {
		case got := <-emitted:
			if got.Raw != l.Raw {
				t.Fatalf("emitted %q, want %q", got.Raw, l.Raw)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d not emitted while the source is idle", i)
		}
	}
	cancel()
	select {
	case err := <-ran:
		if err != context.Canceled {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end on cancel")
	}
	if st := e.Stats(); st.Lines != 5 || st.Parsed != 5 {
		t.Errorf("lines %d parsed %d, want 5 and 5", st.Lines, st.Parsed)
	}
}

// TestRunLiveMatchesSerial feeds a corpus as a live source would, a line
// at a time, and ticks the engine half-way, once every line before was
// emitted: the alerts of the lines and of the tick are those of Process
// and Tick called in the same order on one goroutine.
func TestRunLiveMatchesSerial(t *testing.T) {
	dir := shared(t)
	out, year := corpus(t, dir, "--ssh-lines", "20000", "--nginx-lines", "10", "--seed", "7")
	cfg := hubConfig(dir, append(sshItems, "crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf")...)
	cfg.Year = year
	lines := allLines(readLines(t, filepath.Join(out, "auth.log"), "syslog"))
	half := len(lines) / 2
	at := lines[half-1].ReadAt.Add(time.Hour)

	ref, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []lineAlerts
	for i, l := range lines {
		if i == half {
			want = append(want, lineAlerts{-1, ref.Tick(at)})
		}
		if a := ref.Process(l); len(a) > 0 {
			want = append(want, lineAlerts{i, a})
		}
	}

	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in, tick := make(chan detect.Line), make(chan time.Time)
	emitted, ticked := make(chan int, len(lines)), make(chan struct{})
	var got []lineAlerts
	i := 0
	errc := make(chan error, 1)
	go func() {
		errc <- e.RunLive(context.Background(), in, 2, tick,
			func(l detect.Line, a []model.Alert) {
				if len(a) > 0 {
					got = append(got, lineAlerts{i, a})
				}
				emitted <- i
				i++
			},
			func(now time.Time, a []model.Alert) {
				if !now.Equal(at) {
					t.Errorf("tick at %v, want %v", now, at)
				}
				got = append(got, lineAlerts{-1, a})
				close(ticked)
			})
	}()
	for k, l := range lines {
		if k == half {
			for n := range emitted {
				if n == half-1 {
					break
				}
			}
			tick <- at
			<-ticked
		}
		in <- l
	}
	close(in)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if i != len(lines) {
		t.Fatalf("emitted %d lines of %d", i, len(lines))
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("live alerts differ (-serial +live):\n%s", diff)
	}
	if len(want) < 2 {
		t.Errorf("only %d alert groups to compare", len(want))
	}
}
