// Package hubtest runs the CrowdSec hub's test suite (hub/.tests/NAME:
// config.yaml, a log file, parser.assert and scenario.assert) against
// moat's engine with the reference runner's semantics.
package hubtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/parse"
)

// Options locate the hub and pick tests.
type Options struct {
	HubDir, PatternDir, DataDir string
	// Names are test directory names under HubDir/.tests; empty runs all.
	Names []string
	// Year is given to year-less log dates; 0 infers it per test from the
	// timestamps its asserts expect, else the current year.
	Year int
	// GeoIP answers the GeoIP enrichers; GeoIPFor picks a parser's
	// databases from its data URLs (see MirrorGeoIP).
	GeoIP    parse.GeoIP
	GeoIPFor func(sourceURLs []string) parse.GeoIP
}

// Result is the outcome of one test.
type Result struct {
	Name    string
	Pass    bool
	Failure string // the first failing assert, or why the test could not run
}

// Config is a test's config.yaml.
type Config struct {
	Parsers         []string          `yaml:"parsers"`
	Scenarios       []string          `yaml:"scenarios"`
	Postoverflows   []string          `yaml:"postoverflows"`
	Collections     []string          `yaml:"collections"`
	LogFile         string            `yaml:"log_file"`
	LogType         string            `yaml:"log_type"`
	Labels          map[string]string `yaml:"labels"`
	IgnoreParsers   bool              `yaml:"ignore_parsers"`
	OverrideStatics []map[string]any  `yaml:"override_statics"`
}

// ParserResult is one row of results[stage][parser].
type ParserResult struct {
	Idx     int
	Evt     *detect.Event
	Success bool
}

// ScenarioResult is one element of the scenario results.
type ScenarioResult struct {
	Overflow parse.Overflow
}

// Run runs the selected tests in name order. It stops early only when ctx
// is cancelled.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	names := opts.Names
	if len(names) == 0 {
		ents, err := os.ReadDir(filepath.Join(opts.HubDir, ".tests"))
		if err != nil {
			return nil, fmt.Errorf("list hub tests: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	h, err := hub.Open(opts.HubDir)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r := Result{Name: n}
		if err := runOne(h, opts, n); err != nil {
			r.Failure = err.Error()
		} else {
			r.Pass = true
		}
		out = append(out, r)
	}
	return out, nil
}

func nonEmpty(s []string) []string {
	var out []string
	for _, x := range s {
		if strings.TrimSpace(x) != "" {
			out = append(out, x)
		}
	}
	return out
}

func readConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func runOne(h *hub.Hub, opts Options, name string) error {
	dir := filepath.Join(opts.HubDir, ".tests", name)
	cfg, err := readConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	sel := &hub.Selection{}
	col, err := h.Select(nonEmpty(cfg.Collections))
	if err != nil {
		return err
	}
	if len(nonEmpty(cfg.Collections)) > 0 {
		sel = col
	}
	seen := map[string]bool{}
	for _, p := range sel.Parsers {
		seen[p.Path] = true
	}
	for _, p := range nonEmpty(cfg.Parsers) {
		it, err := h.Ref(hub.Parsers, p)
		if err != nil {
			return err
		}
		if !seen[it.Path] {
			seen[it.Path] = true
			sel.Parsers = append(sel.Parsers, parse.File{Path: it.Path, Stage: it.Stage})
		}
	}
	for _, p := range nonEmpty(cfg.Postoverflows) {
		it, err := h.Ref(hub.Postoverflows, p)
		if err != nil {
			return err
		}
		sel.Postoverflows = append(sel.Postoverflows, parse.File{Path: it.Path, Stage: it.Stage})
	}
	for _, s := range nonEmpty(cfg.Scenarios) {
		it, err := h.Ref(hub.Scenarios, s)
		if err != nil {
			return err
		}
		if !seen[it.Path] {
			seen[it.Path] = true
			sel.Scenarios = append(sel.Scenarios, it.Path)
		}
	}
	if len(cfg.OverrideStatics) > 0 {
		f, err := overrideFile(cfg.OverrideStatics)
		if err != nil {
			return err
		}
		defer os.Remove(f)
		sel.Parsers = append(sel.Parsers, parse.File{Path: f, Stage: "s00-raw"})
	}

	parserAssert, _ := readAsserts(filepath.Join(dir, "parser.assert"))
	scenarioAssert, _ := readAsserts(filepath.Join(dir, "scenario.assert"))
	logName := cfg.LogFile
	if logName == "" {
		logName = name + ".log"
	}
	logData, err := os.ReadFile(filepath.Join(dir, logName))
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	year := opts.Year
	if year == 0 {
		year = inferYear(logData, append(append([]string(nil), parserAssert...), scenarioAssert...))
	}
	eng, err := engine.New(engine.Config{
		PatternDir: opts.PatternDir, DataDir: opts.DataDir,
		Selection: sel, Year: year, Replay: true, Views: true,
		GeoIP: opts.GeoIP, GeoIPFor: opts.GeoIPFor,
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}

	labels := map[string]string{"type": cfg.LogType}
	for k, v := range cfg.Labels {
		labels[k] = v
	}

	presults := map[string]map[string][]ParserResult{}
	var overflows []engine.Overflow
	sc := bufio.NewScanner(bytes.NewReader(logData))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	readAt := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	for sc.Scan() {
		raw := strings.TrimRight(sc.Text(), "\r")
		if raw == "" {
			continue
		}
		var tr parse.Trace
		l := detect.Line{Raw: raw, Src: logName, Module: "file", Labels: labels, ReadAt: readAt, Process: true}
		_, ovs := eng.ProcessTrace(l, &tr)
		for _, r := range tr.Results {
			m := presults[r.Stage]
			if m == nil {
				m = map[string][]ParserResult{}
				presults[r.Stage] = m
			}
			m[r.Parser] = append(m[r.Parser], ParserResult{Idx: r.Idx, Evt: r.Evt, Success: r.Success})
		}
		overflows = append(overflows, ovs...)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	overflows = append(overflows, eng.FlushOverflows()...)
	// The reference runner records a "success" pseudo-stage it never fills.
	presults["success"] = map[string][]ParserResult{"": {}}
	// Stages the pipeline has but no line reached still appear.
	for _, st := range stagesOf(sel.Parsers) {
		if presults[st] == nil {
			presults[st] = map[string][]ParserResult{}
		}
	}

	env := exprenv.New(opts.DataDir)
	if !cfg.IgnoreParsers {
		if len(parserAssert) == 0 {
			return fmt.Errorf("parser.assert: missing or empty")
		}
		if err := check(env, parserAssert, presults, "parser.assert"); err != nil {
			return err
		}
	}
	if len(nonEmpty(cfg.Scenarios)) > 0 || len(nonEmpty(cfg.Collections)) > 0 {
		if len(scenarioAssert) == 0 {
			return fmt.Errorf("scenario.assert: missing or empty")
		}
		res := scenarioResults(overflows)
		if err := check(env, scenarioAssert, res, "scenario.assert"); err != nil {
			return err
		}
	}
	return nil
}

func stagesOf(files []parse.File) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range files {
		if !seen[f.Stage] {
			seen[f.Stage] = true
			out = append(out, f.Stage)
		}
	}
	return out
}

// scenarioResults orders overflows as the reference runner does: by
// scenario name plus joined source values, descending.
func scenarioResults(ovs []engine.Overflow) []ScenarioResult {
	out := make([]ScenarioResult, 0, len(ovs))
	for _, o := range ovs {
		out = append(out, ScenarioResult{Overflow: o.View.Overflow})
	}
	key := func(r ScenarioResult) string {
		return r.Overflow.Alert.GetScenario() + strings.Join(r.Overflow.GetSources(), "")
	}
	// sort.Slice, not SliceStable: the reference sorts with it over the
	// overflows in emission order, and asserts index ties in that order.
	sort.Slice(out, func(i, j int) bool { return key(out[i]) > key(out[j]) })
	return out
}

func readAsserts(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

var (
	isoStamp    = regexp.MustCompile(`"((?:19|20)\d\d)-(\d\d-\d\dT\d\d:\d\d:\d\d)`)
	syslogStamp = regexp.MustCompile(`\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d\d:\d\d:\d\d)\b`)
	monthNum    = map[string]string{"Jan": "01", "Feb": "02", "Mar": "03", "Apr": "04", "May": "05", "Jun": "06", "Jul": "07", "Aug": "08", "Sep": "09", "Oct": "10", "Nov": "11", "Dec": "12"}
)

// inferYear pins the year given to year-less dates: the year the asserts
// expect for timestamps whose month, day and time appear year-less in the
// log. The reference runner used the year the test was written in.
func inferYear(log []byte, asserts []string) int {
	yearless := map[string]bool{}
	for _, m := range syslogStamp.FindAllSubmatch(log, -1) {
		day := string(m[2])
		if len(day) == 1 {
			day = "0" + day
		}
		yearless[monthNum[string(m[1])]+"-"+day+"T"+string(m[3])] = true
	}
	count := map[string]int{}
	best, n := "", 0
	for _, a := range asserts {
		for _, m := range isoStamp.FindAllStringSubmatch(a, -1) {
			if !yearless[m[2]] {
				continue
			}
			count[m[1]]++
			if count[m[1]] > n || (count[m[1]] == n && m[1] > best) {
				best, n = m[1], count[m[1]]
			}
		}
	}
	y := time.Now().UTC().Year()
	if best != "" {
		fmt.Sscanf(best, "%d", &y)
	}
	return y
}

// check evaluates each assert over results; the first false, failing or
// non-boolean line is the error.
func check(env *exprenv.Env, asserts []string, results any, file string) error {
	vars := map[string]any{"results": results, "basename": filepath.Base}
	for i, a := range asserts {
		// Lines naming datasource_path without basename( are compared on
		// the base name by the reference; the runner gives the log's base
		// name as the path, so both spellings hold.
		p, err := env.Compile(a, vars)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %v", file, i+1, a, err)
		}
		out, err := env.Run(p, vars)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %v", file, i+1, a, err)
		}
		if b, ok := out.(bool); !ok || !b {
			return fmt.Errorf("%s:%d: %s%s", file, i+1, a, got(env, a, vars))
		}
	}
	return nil
}

// overrideFile writes the test's override_statics as a parser node that
// runs first in s00-raw, as the reference runner does.
func overrideFile(statics []map[string]any) (string, error) {
	node := map[string]any{"name": "overrides", "filter": "1 == 1", "statics": statics}
	b, err := yaml.Marshal(node)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "00_overrides-*.yaml")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// got renders the left side of a failed `x == y` assert, to show what the
// run produced.
func got(env *exprenv.Env, a string, vars map[string]any) string {
	lhs, _, ok := strings.Cut(a, " == ")
	if !ok {
		return ""
	}
	p, err := env.Compile(lhs, vars)
	if err != nil {
		return ""
	}
	v, err := env.Run(p, vars)
	if err != nil {
		return fmt.Sprintf(" (left side: %v)", err)
	}
	return fmt.Sprintf(" (got %#v)", v)
}
