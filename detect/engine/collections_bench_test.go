package engine

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/hub"
)

// debianHub is the hub snapshot Debian's crowdsec package installs.
var debianHub = Config{
	HubDir:     "/usr/share/crowdsec/hub",
	PatternDir: "/etc/crowdsec/patterns",
	DataDir:    "/usr/share/crowdsec/data",
}

// BenchmarkCollections replays, for every collection of the shared hub
// snapshot and of Debian's (when installed), a log its parsers read
// through an engine built from that collection alone, and reports lines/s
// on one core. nginx and sshd collections get gen-corpus logs; the others
// get the hub test logs of their parsers, cycled. Collections with no such
// log are skipped. Select with -bench 'Collections/debian/crowdsecurity/nginx$'.
func BenchmarkCollections(b *testing.B) {
	dir := shared(b)
	out, year := corpus(b, dir, "--ssh-lines", "200k", "--nginx-lines", "50k", "--seed", "1")
	logs := &collectionLogs{
		gen: map[string]corpusLines{
			"nginx-logs": readLines(b, filepath.Join(out, "access.log"), "nginx"),
			"sshd-logs":  readLines(b, filepath.Join(out, "auth.log"), "syslog"),
		},
		tests: hubTestLogs(b, filepath.Join(dir, "crowdsec-hub/hub/.tests")),
	}
	hubs := []struct {
		name string
		cfg  Config
	}{{"shared", hubConfig(dir)}}
	if _, err := os.Stat(debianHub.HubDir); err == nil {
		hubs = append(hubs, struct {
			name string
			cfg  Config
		}{"debian", debianHub})
	}
	for _, hb := range hubs {
		h, err := hub.Open(hb.cfg.HubDir)
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range h.Items(hub.Collections) {
			b.Run(hb.name+"/"+it.Name, func(b *testing.B) {
				sel, err := h.Select(append([]string{it.Name}, baseItems...))
				if err != nil {
					b.Skipf("select: %v", err)
				}
				lines := logs.forParsers(sel)
				if len(lines) == 0 {
					b.Skip("no log for this collection's parsers")
				}
				cfg := hb.cfg
				cfg.Items, cfg.Replay, cfg.Year = append([]string{it.Name}, baseItems...), true, year
				benchLines(b, cfg, lines)
			})
		}
	}
}

// benchLines cycles lines through an engine built from cfg, as benchEngine
// does, and also reports the share of lines the parsers accepted (a
// figure for a log its parsers do not read would mean nothing).
func benchLines(b *testing.B, cfg Config, lines []detect.Line) {
	e, err := New(cfg)
	if err != nil {
		b.Skipf("load: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, _ := usage()
	start := time.Now()
	n := 0
	for b.Loop() {
		e.Process(lines[n%len(lines)])
		n++
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "lines/s")
	if cpu1, _ := usage(); cpu1 > cpu0 {
		b.ReportMetric(float64(n)/(cpu1-cpu0).Seconds(), "lines/cpu-s")
	}
	st := e.Stats()
	if st.Lines > 0 {
		b.ReportMetric(float64(st.Parsed)/float64(st.Lines), "parsed/line")
	}
	b.ReportMetric(float64(st.Alerts), "alerts")
	b.ReportMetric(float64(len(e.Env().Dynamic())), "dynamic-exprs")
}

type collectionLogs struct {
	// gen holds the generated logs by the parser that reads them.
	gen map[string]corpusLines
	// tests holds the hub test logs by the s01-parse parser they test.
	tests map[string][]detect.Line
}

// baseItems are the parsers every install has (the linux collection
// brings them): without syslog-logs no file line reaches stage s01.
var baseItems = []string{"crowdsecurity/syslog-logs", "crowdsecurity/dateparse-enrich"}

// genLimit caps the generated lines a collection replays: enough to cycle
// through every class of the corpus, small enough to build quickly.
const genLimit = 100_000

// forParsers returns the lines for a selection: a generated log when one
// of its parsers reads one, else the hub test logs of its parsers.
func (c *collectionLogs) forParsers(sel *hub.Selection) []detect.Line {
	var names []string
	for _, p := range sel.Parsers {
		if p.Stage == "s01-parse" {
			names = append(names, parserName(p.Path))
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if g, ok := c.gen[n]; ok {
			out := make([]detect.Line, 0, min(g.Len(), genLimit))
			for i := 0; i < g.Len() && i < genLimit; i++ {
				out = append(out, g.At(i))
			}
			return out
		}
	}
	var out []detect.Line
	for _, n := range names {
		out = append(out, c.tests[n]...)
	}
	return out
}

func parserName(path string) string {
	return strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
}

// hubTestLogs reads every hub test's log, keyed by the names of the
// parsers the test lists.
func hubTestLogs(b testing.TB, dir string) map[string][]detect.Line {
	b.Helper()
	cfgs, err := filepath.Glob(filepath.Join(dir, "*", "config.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string][]detect.Line{}
	for _, cf := range cfgs {
		raw, err := os.ReadFile(cf)
		if err != nil {
			b.Fatal(err)
		}
		var tc struct {
			Parsers []string `yaml:"parsers"`
			LogFile string   `yaml:"log_file"`
			LogType string   `yaml:"log_type"`
		}
		if yaml.Unmarshal(raw, &tc) != nil || tc.LogFile == "" || tc.LogType == "" {
			continue
		}
		lines := fileLines(b, filepath.Join(filepath.Dir(cf), tc.LogFile), tc.LogType)
		for _, p := range tc.Parsers {
			n := parserName(p)
			out[n] = append(out[n], lines...)
		}
	}
	return out
}

func fileLines(b testing.TB, path, typ string) []detect.Line {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []detect.Line
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		out = append(out, detect.Line{Raw: sc.Text(), Src: path, Module: "file", Labels: map[string]string{"type": typ}, Process: true})
	}
	return out
}
