package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// testBinary compiles the tests of one of moat's packages (once per run).
func testBinary(ctx context.Context, o *Options, pkg string) (string, error) {
	bin := filepath.Join(o.WorkDir, strings.ReplaceAll(pkg, "/", "_")+".test")
	if _, err := run(ctx, "go", "test", "-C", o.Repo, "-c", "-o", bin, "./"+pkg); err != nil {
		return "", err
	}
	return bin, nil
}

// benchLine is one result line of `go test -bench`: the name without its
// -GOMAXPROCS suffix, and each metric by unit.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBench runs the benchmarks of pkg matching pattern, once per iteration
// (-benchtime 1x), count times, in the package directory as go test would,
// and returns every metric of every run: name -> unit -> values.
func goBench(ctx context.Context, o *Options, pkg, pattern string, count int, extra ...string) (map[string]map[string][]float64, error) {
	bin, err := testBinary(ctx, o, pkg)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-test.run", "^$", "-test.bench", pattern, "-test.benchtime", "1x", "-test.count", fmt.Sprint(count)}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Join(o.Repo, pkg)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	logf(o.Log, "go test -bench %s ./%s (count %d)", pattern, pkg, count)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -test.bench %s: %w\n%s", pkg, pattern, err, tail(out.String(), 3000))
	}
	res := parseBench(out.String())
	if len(res) == 0 {
		return nil, fmt.Errorf("%s -test.bench %s: no benchmark ran (skipped?)\n%s", pkg, pattern, tail(out.String(), 3000))
	}
	return res, nil
}

func parseBench(out string) map[string]map[string][]float64 {
	res := map[string]map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		if res[m[1]] == nil {
			res[m[1]] = map[string][]float64{}
		}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
		}
	}
	return res
}

// pick turns the named figures of a benchmark run into Metrics; a figure
// the benchmark did not report is an error, so a renamed metric shows.
func pick(got map[string]map[string][]float64, pkg string, want []pickSpec) ([]Metric, error) {
	var ms []Metric
	var missing []string
	for _, w := range want {
		vs := got[w.bench][w.unit]
		if len(vs) == 0 {
			missing = append(missing, w.bench+" "+w.unit)
			continue
		}
		for i := range vs {
			vs[i] *= w.scale()
		}
		ms = append(ms, Metric{Name: w.name, Unit: w.as, Value: newStat(vs), From: pkg + " " + w.bench + " (" + w.unit + ")"})
	}
	if len(missing) > 0 {
		return ms, fmt.Errorf("%s: benchmarks did not report %s", pkg, strings.Join(missing, ", "))
	}
	return ms, nil
}

type pickSpec struct {
	name, bench, unit, as string
	mul                   float64 // 0: 1
}

func (p pickSpec) scale() float64 {
	if p.mul == 0 {
		return 1
	}
	return p.mul
}

// runScale drives moat's own benchmarks of a million active decisions:
// load time into each backend, kernel memory and the daemon's RSS, and a
// bouncer's stream startup. The quick mode loads 10k and streams 200k.
// Then the flood tests (1M sources, 100k quick), the mass expiry and the
// fleet server's load.
func runScale(ctx context.Context, o *Options, res *Result) error {
	size := "1M"
	if o.Quick {
		size = "10k"
	}
	var errs []string
	got, err := goBench(ctx, o, "enforce", "^BenchmarkLoad$/^(nft|xdp)$/^"+size+"$/^v4$", o.Reps)
	if err == nil {
		var ms []Metric
		ms, err = pick(got, "enforce", []pickSpec{
			{name: "nftables: load " + size + " decisions", bench: "BenchmarkLoad/nft/" + size + "/v4", unit: "total-ms", as: "ms"},
			{name: "XDP: load " + size + " decisions", bench: "BenchmarkLoad/xdp/" + size + "/v4", unit: "total-ms", as: "ms"},
		})
		res.Scale = append(res.Scale, ms...)
	}
	if err != nil {
		errs = append(errs, err.Error())
	}
	if !o.Quick {
		// Once: host-wide kernel memory, with settling pauses (30 s a run).
		got, err := goBench(ctx, o, "enforce", "^BenchmarkKernelMemory$/^(nft|xdp|both)$", 1)
		if err == nil {
			var ms []Metric
			ms, err = pick(got, "enforce", []pickSpec{
				{name: "nftables: kernel memory, 1M", bench: "BenchmarkKernelMemory/nft", unit: "1M-MiB", as: "MiB"},
				{name: "XDP: kernel memory, 1M", bench: "BenchmarkKernelMemory/xdp", unit: "1M-MiB", as: "MiB"},
				{name: "both backends: moat RSS holding 1M", bench: "BenchmarkKernelMemory/both", unit: "rss-MiB", as: "MiB"},
			})
			res.Scale = append(res.Scale, ms...)
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	var extra []string
	n := "1M"
	if o.Quick {
		extra, n = []string{"-test.short"}, "200k"
	}
	got, err = goBench(ctx, o, "enforce/api", "^BenchmarkStreamStartup1M$", o.Reps, extra...)
	if err == nil {
		var ms []Metric
		ms, err = pick(got, "enforce/api", []pickSpec{
			{name: "bouncer stream startup, " + n + " decisions", bench: "BenchmarkStreamStartup1M", unit: "s/startup", as: "s"},
			{name: "bouncer stream startup response, " + n, bench: "BenchmarkStreamStartup1M", unit: "MiB/response", as: "MiB"},
		})
		res.Scale = append(res.Scale, ms...)
	}
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, fn := range []func(context.Context, *Options, *Result) error{runFloods, runExpiryStall, runFleetLoad} {
		if err := fn(ctx, o, res); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// dropConfigs are BenchmarkDropCost's configurations, as it names them.
var dropConfigs = []struct{ key, name string }{
	{"none", "no filter (UDP to a closed port)"},
	{"moat-nft", "moat nftables (prerouting raw, hash set)"},
	{"crowdsec", "crowdsec-firewall-bouncer chain (ip input)"},
	{"xdp", "moat XDP (native on veth)"},
}

// runDrop drives BenchmarkDropCost: the same veth flood from a banned
// source against each filter, interleaved inside the benchmark.
func runDrop(ctx context.Context, o *Options, res *Result) error {
	if o.Quick {
		res.Skipped = append(res.Skipped, "drop: SKIPPED in the quick mode (BenchmarkDropCost floods for about a minute)")
		return nil
	}
	got, err := goBench(ctx, o, "enforce", "^BenchmarkDropCost$", max(1, o.Reps-1))
	if err != nil {
		return err
	}
	var want []pickSpec
	for _, c := range dropConfigs {
		want = append(want,
			pickSpec{name: c.name + ": packets/s", bench: "BenchmarkDropCost", unit: c.key + "-Mpps", as: "Mpps"},
			pickSpec{name: c.name + ": receive CPU per packet", bench: "BenchmarkDropCost", unit: c.key + "-ns/pkt", as: "ns"})
	}
	ms, err := pick(got, "enforce", want)
	res.Drop = append(res.Drop, ms...)
	return err
}
