package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStat(t *testing.T) {
	s := newStat([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || s.N != 4 || s.Values[0] != 3 {
		t.Fatalf("newStat = %+v", s)
	}
	p50, p99, mx := percentiles([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if p50 != 5.5 || math.Abs(p99-9.91) > 1e-9 || mx != 10 {
		t.Fatalf("percentiles = %v %v %v", p50, p99, mx)
	}
	if newStat(nil).N != 0 {
		t.Fatal("an empty Stat has N 0")
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkLoad/nft/1M/v4-2         	       1	4980578972 ns/op	      3826 backend-ms	    261396 decisions/s	      3826 total-ms
BenchmarkLoad/nft/1M/v4-2         	       1	4980578972 ns/op	      3900 backend-ms	    261396 decisions/s	      3910 total-ms
BenchmarkStreamStartup1M   	       1	3030047537 ns/op	       167.3 MiB/response	         3.030 s/startup
PASS
`
	got := parseBench(out)
	if v := got["BenchmarkLoad/nft/1M/v4"]["total-ms"]; len(v) != 2 || v[1] != 3910 {
		t.Fatalf("total-ms = %v", v)
	}
	if v := got["BenchmarkStreamStartup1M"]["s/startup"]; len(v) != 1 || v[0] != 3.03 {
		t.Fatalf("s/startup = %v", v)
	}
	if _, err := pick(got, "enforce", []pickSpec{{name: "x", bench: "BenchmarkLoad/nft/1M/v4", unit: "no-such"}}); err == nil {
		t.Fatal("a metric the benchmark did not report is an error")
	}
}

// sampleResult is a result with every part, as a full run writes it.
func sampleResult() *Result {
	res := &Result{Schema: 1, Mode: "quick", Reps: 2, Machine: machine()}
	for _, src := range []string{"file", "journald"} {
		for _, be := range []string{"nftables", "xdp"} {
			l := Latency{Source: src, Backend: be, Attacks: 4, TargetP99: latencyTargets[src], Samples: []float64{0.5, 0.8, 1.2, 3}}
			l.P50, l.P99, l.Max = newStat([]float64{0.7, 0.9}), newStat([]float64{2, 3}), newStat([]float64{3, 3})
			l.Pooled.P50, l.Pooled.P99, l.Pooled.Max = percentiles(l.Samples)
			res.Latency = append(res.Latency, l)
		}
	}
	res.Throughput = []Throughput{
		{Tool: "moat", Log: "auth.log", Corpus: "main", Lines: 1000, Workers: 1, LinesPerSec: newStat([]float64{2e5, 2.2e5})},
		{Tool: "moat", Log: "auth.log", Corpus: "peer", Lines: 100, Workers: 2, LinesPerSec: newStat([]float64{5e4})},
		{Tool: "crowdsec", Log: "auth.log", Corpus: "peer", Lines: 100, LinesPerSec: newStat([]float64{1e3})},
	}
	res.Peers = []PeerRatio{{Peer: "crowdsec", Log: "auth.log", Lines: 100, Speed: 50, CPU: 30, RSS: 2}}
	pl := PeerLatency{Peer: "crowdsec", UpdateFrequency: "100ms", Attacks: 3, Samples: []float64{900, 1100, 1000}, Ratio: 1000}
	pl.P50, pl.P99, pl.Max = percentiles(pl.Samples)
	pl.Moat.P50, pl.Moat.P99, pl.Moat.Max = 1, 2, 3
	res.PeerLatency = []PeerLatency{pl}
	res.Scale = []Metric{{Name: "XDP: load 10k decisions", Unit: "ms", Value: newStat([]float64{14})}}
	for _, from := range []string{fromFlood + "Detection/replay", fromFlood + "Detection/live", fromFlood + "OfAttackers", fromFleet, fromExpiry} {
		res.Scale = append(res.Scale, Metric{Name: "x", Unit: "MiB", Value: newStat([]float64{1}), From: from})
	}
	return res
}

func TestReportAndCheck(t *testing.T) {
	dir := t.TempDir()
	res := sampleResult()
	o := &Options{OutDir: dir}
	if err := writeOutputs(o, res); err != nil {
		t.Fatal(err)
	}
	if err := Check(filepath.Join(dir, "result.json")); err != nil {
		t.Fatalf("a complete result fails the check: %v", err)
	}
	for _, f := range []string{"table.txt", "latency-cdf-file.svg", "latency-cdf-journald.svg", "throughput.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasSuffix(f, ".svg") && (!strings.HasPrefix(string(b), "<svg") || strings.Contains(string(b), "NaN")) {
			t.Fatalf("%s is not a clean SVG:\n%s", f, b)
		}
	}
	if tab := Table(res); !strings.Contains(tab, "journald  xdp") || !strings.Contains(tab, "50.00×") || !strings.Contains(tab, "1000×") {
		t.Fatalf("table lacks rows:\n%s", tab)
	}

	// A failed part, or a missing one that was not skipped, fails the check.
	res.Errors = []string{"latency: boom"}
	writeJSON(t, filepath.Join(dir, "bad.json"), res)
	if err := Check(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("check of a failed run: %v", err)
	}
	res.PeerLatency[0].Samples = nil
	writeJSON(t, filepath.Join(dir, "bad.json"), res)
	if err := Check(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), "peerlive") {
		t.Fatalf("a live peer without samples passes: %v", err)
	}
	res.PeerLatency = nil
	res.Errors, res.Latency = nil, nil
	writeJSON(t, filepath.Join(dir, "bad.json"), res)
	if err := Check(filepath.Join(dir, "bad.json")); err == nil {
		t.Fatal("a result without latency and no reason passes")
	}
	res.Skipped = []string{"latency: SKIPPED, needs root"}
	writeJSON(t, filepath.Join(dir, "ok.json"), res)
	if err := Check(filepath.Join(dir, "ok.json")); err != nil {
		t.Fatalf("a skipped part fails the check: %v", err)
	}
	res.Scale = res.Scale[:len(res.Scale)-1]
	writeJSON(t, filepath.Join(dir, "bad.json"), res)
	if err := Check(filepath.Join(dir, "bad.json")); err == nil || !strings.Contains(err.Error(), fromExpiry) {
		t.Fatalf("a scale part without the expiry stall passes: %v", err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteDocsKeepsTheProse(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "performance.md")
	if err := os.WriteFile(page, []byte("# Perf\nprose\n"+docsBegin+"\nold\n"+docsEnd+"\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteDocs(dir, sampleResult()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(page)
	s := string(b)
	if !strings.HasPrefix(s, "# Perf\nprose\n") || !strings.HasSuffix(s, docsEnd+"\ntail\n") || strings.Contains(s, "\nold\n") || !strings.Contains(s, "| file | nftables |") {
		t.Fatalf("performance.md:\n%s", s)
	}
}

// TestTestLines reads the lines the flood, expiry and fleet load tests log, as they
// log them: a change on either side shows here.
func TestTestLines(t *testing.T) {
	r := testRun{output: map[string]*strings.Builder{}}
	for test, line := range map[string]string{
		"TestFloodDetection/live": "    flood_detect_test.go:224: 100000 flood sources: fast 100/100 caught, slow 19/20 caught, 0 false bans; heap growth 16.3 MiB (peak 16.4 MiB), process peak RSS 50.1 MiB, 5.331s\n",
		"TestFloodOfAttackers":    "    flood_detect_test.go:282: 100000 attackers: 100000 banned by ssh-bf; heap growth 21.4 MiB, process peak RSS 80.6 MiB, 1m5.036s\n",
		"TestExpiryStall":         "    expirystall_test.go:103: expiry stall: 100000 decisions loaded in 527.3 ms expired in 244.9 ms; 656 new bans around it: p50 0.048 ms, p99 0.197 ms, max 244.305 ms\n",
		"TestFleetStreamLoad":     "    fleetload_test.go:180: fleet load summary: streams 1000, alerts/s 10854, push p50 ms 20.6, push p99 ms 86.4, propagation p50 ms 128.6, propagation p99 ms 226.5, cpu ms per 1k alerts: server 83, postgres 36, agents 43, softirq 12, alerts per group commit 39.0, other work cores 0.18\n",
	} {
		r.output[test] = &strings.Builder{}
		r.output[test].WriteString(line)
	}
	v, err := r.match("TestFloodDetection/live", floodLine)
	if err != nil || v[3] != 19 || v[7] != 16.4 || v[9] != 5.331 {
		t.Fatalf("flood line: %v %v", v, err)
	}
	if v, err := r.match("TestFloodOfAttackers", attackersLine); err != nil || v[1] != 100000 || v[4] != 65.036 {
		t.Fatalf("attackers line: %v %v", v, err)
	}
	if v, err := r.match("TestExpiryStall", expiryLine); err != nil || v[2] != 244.9 || v[6] != 244.305 {
		t.Fatalf("expiry line: %v %v", v, err)
	}
	if v, err := r.match("TestFleetStreamLoad", fleetLoadLine); err != nil || v[1] != 10854 || v[4] != 128.6 || v[8] != 43 || v[11] != 0.18 {
		t.Fatalf("fleet load line: %v %v", v, err)
	}
	if _, err := r.match("TestFloodDetection/replay", floodLine); err == nil {
		t.Fatal("a test that did not run matched")
	}
}
