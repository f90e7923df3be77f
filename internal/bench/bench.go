package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Options select what a run measures and where it writes.
type Options struct {
	Repo    string // the checkout (the Makefile runs from it)
	WorkDir string // scratch space, removed at the end
	// CacheDir keeps generated corpora between runs (they are
	// deterministic, so a cached one is the same file).
	CacheDir string
	OutDir   string // result JSON, table and SVGs
	Quick    bool
	Reps     int // repetitions of every measurement
	// ThroughputReps, when set, repeats the main corpus's replays fewer
	// times than Reps: they are the longest part of the full run.
	ThroughputReps int
	Attacks        int // attackers per latency run
	// Corpus sizes (lines) for moat's throughput and for the peer
	// comparison, where the slowest peer sets the size.
	SSHLines, NginxLines         int
	PeerSSHLines, PeerNginxLines int
	// LargeSSHLines, when set, is an sshd corpus replayed once per
	// worker count (ten times the main one in the full run).
	LargeSSHLines int
	// Only, when set, names the parts to run (latency, throughput, peers,
	// peerlive, scale, drop); the rest are skipped.
	Only []string
	Log  io.Writer

	moatBin string
}

// QuickOptions and FullOptions are the two modes of make bench.
func QuickOptions() Options {
	return Options{Quick: true, Reps: 1, Attacks: 20, SSHLines: 100_000, NginxLines: 10_000, PeerSSHLines: 10_000, PeerNginxLines: 1_000}
}

func FullOptions() Options {
	return Options{Reps: 3, ThroughputReps: 2, Attacks: 200, SSHLines: 1_000_000, NginxLines: 1_000_000, LargeSSHLines: 10_000_000, PeerSSHLines: 30_000, PeerNginxLines: 2_000}
}

// Result is the JSON document a run writes.
type Result struct {
	Schema     int          `json:"schema"`
	Mode       string       `json:"mode"`
	Started    time.Time    `json:"started"`
	Seconds    float64      `json:"seconds"`
	Machine    Machine      `json:"machine"`
	Reps       int          `json:"reps"`
	Latency    []Latency    `json:"latency"`
	Throughput []Throughput `json:"throughput"`
	Peers      []PeerRatio  `json:"peers"`
	// PeerLatency is the peers' live path beside moat's (peerlive).
	PeerLatency []PeerLatency `json:"peer_latency"`
	Scale       []Metric      `json:"scale"`
	Drop        []Metric      `json:"drop"`
	Skipped     []string      `json:"skipped"`
	Errors      []string      `json:"errors"`
}

// Machine is where the numbers come from.
type Machine struct {
	CPUs   int    `json:"nproc"`
	CPU    string `json:"cpu"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	MemMiB int    `json:"mem_mib"`
	// Load is /proc/loadavg at the start and at the end of the run: the
	// machine may be shared.
	Load []string `json:"loadavg"`
}

// Metric is one figure reported by one of moat's Go benchmarks.
type Metric struct {
	Name  string `json:"name"`
	Unit  string `json:"unit"`
	Value Stat   `json:"value"`
	From  string `json:"from"` // the benchmark it came from
}

// Run measures everything opts select, writes result.json, table.txt and
// the charts into opts.OutDir and returns the result. A part that fails is
// recorded in Errors and the run goes on; a part that cannot run here (not
// root, a peer not installed) is recorded in Skipped.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	start := time.Now()
	res := &Result{Schema: 1, Mode: "full", Started: start.UTC(), Reps: o.Reps, Machine: machine()}
	if o.Quick {
		res.Mode = "quick"
	}
	for _, d := range []string{o.OutDir, o.CacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	work, err := os.MkdirTemp(o.WorkDir, "moat-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	o.WorkDir = work
	o.moatBin = filepath.Join(work, "moat")
	logf(o.Log, "building moat")
	if _, err := run(ctx, "go", "build", "-C", o.Repo, "-o", o.moatBin, "./cmd/moat"); err != nil {
		return nil, err
	}
	root := os.Geteuid() == 0
	parts := []struct {
		name     string
		needRoot bool
		fn       func(context.Context, *Options, *Result) error
	}{
		{"throughput", false, runThroughput},
		{"peers", true, runPeers},
		{"latency", true, runLatencies},
		// After latency, to compare with moat's figure of the same run.
		{"peerlive", true, runPeerLive},
		{"scale", true, runScale},
		{"drop", true, runDrop},
	}
	for _, p := range parts {
		switch {
		case len(o.Only) > 0 && !contains(o.Only, p.name):
			continue
		case p.needRoot && !root:
			res.Skipped = append(res.Skipped, p.name+": SKIPPED, needs root (network namespaces, nftables, BPF); run `sudo make bench`")
			logf(o.Log, "%s", res.Skipped[len(res.Skipped)-1])
			continue
		}
		t0 := time.Now()
		logf(o.Log, "== %s", p.name)
		if err := p.fn(ctx, &o, res); err != nil {
			res.Errors = append(res.Errors, p.name+": "+err.Error())
			logf(o.Log, "%s failed: %v", p.name, err)
		}
		logf(o.Log, "== %s took %.1fs", p.name, time.Since(t0).Seconds())
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.Machine.Load = append(res.Machine.Load, loadavg())
	return res, writeOutputs(&o, res)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func logf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "moat-bench: %s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Load = []string{loadavg()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemMiB = kb / 1024
		}
	}
	return m
}

// runLatencies measures every source and backend, the repetitions
// interleaved so slow phases of the machine hit all alike.
func runLatencies(ctx context.Context, o *Options, res *Result) error {
	type key struct{ source, backend string }
	combos := []key{{"file", "nftables"}, {"file", "xdp"}, {"journald", "nftables"}, {"journald", "xdp"}}
	runs := map[key][]latencyRun{}
	var errs []string
	for rep := range o.Reps {
		for _, k := range combos {
			logf(o.Log, "latency %s -> %s, run %d/%d (%d attackers)", k.source, k.backend, rep+1, o.Reps, o.Attacks)
			r, err := runLatency(ctx, o, k.source, k.backend)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			runs[k] = append(runs[k], r)
		}
	}
	for _, k := range combos {
		if len(runs[k]) == 0 {
			continue
		}
		l := Latency{Source: k.source, Backend: k.backend, TargetP99: latencyTargets[k.source]}
		var p50s, p99s, maxs, gaps []float64
		for _, r := range runs[k] {
			p50, p99, mx := percentiles(r.Samples)
			p50s, p99s, maxs = append(p50s, p50), append(p99s, p99), append(maxs, mx)
			l.Samples = append(l.Samples, r.Samples...)
			l.WarmUp = append(l.WarmUp, r.WarmUp)
			gaps = append(gaps, r.Gaps...)
			l.Attacks += len(r.Samples) + r.Misses
			l.Misses += r.Misses
		}
		l.P50, l.P99, l.Max = newStat(p50s), newStat(p99s), newStat(maxs)
		l.ProbeGap = newStat(gaps)
		l.ProbeGap.Values = nil // the samples' order; not worth the bytes
		l.Pooled.P50, l.Pooled.P99, l.Pooled.Max = percentiles(l.Samples)
		res.Latency = append(res.Latency, l)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// writeOutputs writes result.json, table.txt and the charts.
func writeOutputs(o *Options, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "table.txt"), []byte(Table(res)), 0o644); err != nil {
		return err
	}
	return writeCharts(o.OutDir, res)
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
