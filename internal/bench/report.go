package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// section is one table of the report: a title, a header and rows.
type section struct {
	title string
	head  []string
	rows  [][]string
}

// fnum formats a figure with a precision that suits its size.
func fnum(v float64) string {
	switch a := max(v, -v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// fstat is the median, with the spread [min–max] when there were several
// runs.
func fstat(s Stat) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fnum(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", fnum(s.Median), fnum(s.Min), fnum(s.Max))
}

func sections(res *Result) []section {
	lat := section{title: "Log line written → attacker's packets dropped (ms; median [min–max] of the per-run figure; pooled = all samples)",
		head: []string{"source", "backend", "attacks", "p50", "p99", "max", "pooled p50", "pooled p99", "pooled max", "p99 target", "met", "probe gap µs, median (max)"}}
	for _, l := range res.Latency {
		met := "yes"
		if l.Pooled.P99 > l.TargetP99 {
			met = "NO"
		}
		att := fmt.Sprint(l.Attacks)
		if l.Misses > 0 {
			att += fmt.Sprintf(" (%d not dropped)", l.Misses)
		}
		lat.rows = append(lat.rows, []string{l.Source, l.Backend, att, fstat(l.P50), fstat(l.P99), fstat(l.Max),
			fnum(l.Pooled.P50), fnum(l.Pooled.P99), fnum(l.Pooled.Max), "≤ " + fnum(l.TargetP99), met, fnum(l.ProbeGap.Median) + " (" + fnum(l.ProbeGap.Max) + ")"})
	}
	thr := section{title: "Replay throughput (start-up included; lines/CPU-s is the rate per core)",
		head: []string{"tool", "corpus", "log", "lines", "workers", "lines/s", "lines/CPU-s", "CPU s", "peak RSS MiB", "precision", "recall"}}
	for _, t := range res.Throughput {
		w := "–"
		if t.Workers > 0 {
			w = fmt.Sprint(t.Workers)
		}
		thr.rows = append(thr.rows, []string{t.Tool, t.Corpus, t.Log, fmt.Sprint(t.Lines), w, fstat(t.LinesPerSec), fstat(t.LinesPerCPUSec),
			fstat(t.CPUSec), fstat(t.RSSMiB), fmt.Sprintf("%.3f", t.Precision), fmt.Sprintf("%.3f (%d/%d)", t.Recall, t.Caught, t.Expected)})
	}
	peers := section{title: "moat against the peers, same corpus, same repetitions (× in moat's favour)",
		head: []string{"peer", "log", "lines", "moat faster by", "peer CPU / moat CPU", "peer RSS / moat RSS"}}
	for _, p := range res.Peers {
		peers.rows = append(peers.rows, []string{p.Peer, p.Log, fmt.Sprint(p.Lines), fnum(p.Speed) + "×", fnum(p.CPU) + "×", fnum(p.RSS) + "×"})
	}
	live := section{title: "Live, log line written → attacker's address in the peer's firewall set, beside moat's line → packets dropped (ms, pooled; × = peer p50 / moat p50)",
		head: []string{"peer", "version", "bouncer update_frequency", "attacks", "p50", "p99", "max", "moat p50", "moat p99", "moat max", "moat faster by"}}
	for _, p := range res.PeerLatency {
		att := fmt.Sprint(p.Attacks)
		if p.Misses > 0 {
			att += fmt.Sprintf(" (%d never banned)", p.Misses)
		}
		live.rows = append(live.rows, []string{p.Peer, p.Version, p.UpdateFrequency, att, fnum(p.P50), fnum(p.P99), fnum(p.Max),
			fnum(p.Moat.P50), fnum(p.Moat.P99), fnum(p.Moat.Max), fnum(p.Ratio) + "×"})
	}
	metrics := func(title string, ms []Metric) section {
		s := section{title: title, head: []string{"measure", "value", "unit", "from"}}
		for _, m := range ms {
			s.rows = append(s.rows, []string{m.Name, fstat(m.Value), m.Unit, m.From})
		}
		return s
	}
	return []section{lat, thr, peers, live,
		metrics("Scale (moat's own benchmarks, one iteration per run)", res.Scale),
		metrics("Drop rate, one veth flood from a banned source (enforce BenchmarkDropCost; each run is the median of 3 interleaved floods)", res.Drop)}
}

func header(res *Result) string {
	m := res.Machine
	return fmt.Sprintf("moat-bench %s mode, %d repetition(s), %.0f s, %s\nmachine: %d CPUs (%s), kernel %s, %d MiB, %s; load average %s\n",
		res.Mode, res.Reps, res.Seconds, res.Started.Format("2006-01-02 15:04 UTC"), m.CPUs, m.CPU, m.Kernel, m.MemMiB, m.Go, strings.Join(m.Load, " at the start, ")+" at the end")
}

func footer(res *Result) string {
	var b strings.Builder
	for _, s := range res.Skipped {
		fmt.Fprintf(&b, "skipped: %s\n", s)
	}
	for _, e := range res.Errors {
		fmt.Fprintf(&b, "ERROR: %s\n", firstLine(e))
	}
	return b.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Table is the human-readable report.
func Table(res *Result) string {
	var b strings.Builder
	b.WriteString(header(res))
	for _, s := range sections(res) {
		if len(s.rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s\n", s.title)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(s.head, "\t"))
		for _, r := range s.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		tw.Flush()
	}
	b.WriteString("\n" + footer(res))
	return b.String()
}

// Markdown is the report as Markdown tables, for docs/performance.md.
func Markdown(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "```\n%s```\n", header(res))
	for _, s := range sections(res) {
		if len(s.rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n**%s**\n\n| %s |\n|%s\n", s.title, strings.Join(s.head, " | "), strings.Repeat("---|", len(s.head)))
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
		}
	}
	if f := footer(res); f != "" {
		fmt.Fprintf(&b, "\n```\n%s```\n", f)
	}
	return b.String()
}

const (
	docsBegin = "<!-- moat-bench:begin (written by make bench; edits between the markers are lost) -->"
	docsEnd   = "<!-- moat-bench:end -->"
)

// WriteDocs writes the charts into dir and the tables into
// dir/performance.md, between its markers (appended when it has none).
func WriteDocs(dir string, res *Result) error {
	if err := writeCharts(dir, res); err != nil {
		return err
	}
	path := filepath.Join(dir, "performance.md")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	block := docsBegin + "\n" + Markdown(res) + docsEnd
	text := string(old)
	i, j := strings.Index(text, docsBegin), strings.Index(text, docsEnd)
	if i >= 0 && j > i {
		text = text[:i] + block + text[j+len(docsEnd):]
	} else {
		text += "\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// Check validates a result.json: it parses, has the schema, and holds
// every part that ran (as root, the kernel parts too), with no error.
// It checks that the suite runs, not what its numbers are.
func Check(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var bad []string
	if res.Schema != 1 {
		bad = append(bad, fmt.Sprintf("schema %d, want 1", res.Schema))
	}
	if len(res.Errors) > 0 {
		bad = append(bad, fmt.Sprintf("%d part(s) failed: %s", len(res.Errors), firstLine(res.Errors[0])))
	}
	if len(res.Throughput) == 0 && !skipped(&res, "throughput:") {
		bad = append(bad, "no throughput measured (and not skipped)")
	}
	for _, t := range res.Throughput {
		if t.LinesPerSec.N == 0 || t.LinesPerSec.Median <= 0 {
			bad = append(bad, fmt.Sprintf("%s %s: no lines/s", t.Tool, t.Log))
		}
	}
	if len(res.Latency) == 0 && !skipped(&res, "latency:") {
		bad = append(bad, "no latency measured (and not skipped for want of root)")
	}
	for _, l := range res.Latency {
		if len(l.Samples) == 0 {
			bad = append(bad, fmt.Sprintf("latency %s/%s: no samples", l.Source, l.Backend))
		}
	}
	for _, p := range res.PeerLatency {
		if len(p.Samples) == 0 || p.UpdateFrequency == "" || p.Moat.P50 <= 0 || p.Ratio <= 0 {
			bad = append(bad, fmt.Sprintf("peerlive %s: no samples, update_frequency or moat figure", p.Peer))
		}
	}
	if len(res.PeerLatency) == 0 && len(res.Latency) > 0 && !skipped(&res, "peerlive:") {
		bad = append(bad, "no live peer latency (and not skipped)")
	}
	if len(res.Scale) == 0 && !skipped(&res, "scale:") {
		bad = append(bad, "no scale figure (and not skipped)")
	}
	if len(res.Scale) > 0 {
		// The flood, the mass expiry and the fleet load come from tests, not benchmarks:
		// a renamed log line loses them without failing a benchmark.
		for _, from := range []string{fromFlood + "Detection/replay", fromFlood + "Detection/live", fromFlood + "OfAttackers", fromExpiry, fromFleet} {
			if !hasMetricFrom(res.Scale, from) {
				bad = append(bad, "scale: no figure from "+from)
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s is not a complete result: %s", path, strings.Join(bad, "; "))
	}
	return nil
}

// skipped reports whether a part was skipped, with its reason recorded.
func skipped(res *Result, prefix string) bool {
	for _, s := range res.Skipped {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func hasMetricFrom(ms []Metric, from string) bool {
	for _, m := range ms {
		if m.From == from && m.Value.N > 0 {
			return true
		}
	}
	return false
}
