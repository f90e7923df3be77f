package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// testRun is what `go test -json` said about each test: its log output
// and whether it passed.
type testRun struct {
	output map[string]*strings.Builder
	passed map[string]bool
}

// goTestJSON runs `go test -json -run pattern` in pkg with extra
// environment and returns each test's output. A failing test is not an
// error here: the caller reports its figures and its failure.
func goTestJSON(ctx context.Context, o *Options, pkg, pattern string, env []string, args ...string) (testRun, error) {
	r := testRun{output: map[string]*strings.Builder{}, passed: map[string]bool{}}
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-C", o.Repo, "-count=1", "-json", "-run", pattern, "-timeout", "60m", "./" + pkg}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	logf(o.Log, "go test -run '%s' ./%s %s", pattern, pkg, strings.Join(env, " "))
	err := cmd.Run()
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		switch ev.Action {
		case "output":
			if r.output[ev.Test] == nil {
				r.output[ev.Test] = &strings.Builder{}
			}
			r.output[ev.Test].WriteString(ev.Output)
		case "pass":
			r.passed[ev.Test] = true
		}
	}
	if len(r.output) == 0 {
		return r, fmt.Errorf("go test -run %s ./%s: no test ran: %v\n%s", pattern, pkg, err, tail(errOut.String()+out.String(), 3000))
	}
	return r, nil
}

// match finds re in a test's output and returns its submatches as
// numbers (a Go duration is read in seconds).
func (r testRun) match(test string, re *regexp.Regexp) ([]float64, error) {
	b := r.output[test]
	if b == nil {
		return nil, fmt.Errorf("%s did not run", test)
	}
	m := re.FindStringSubmatch(b.String())
	if m == nil {
		return nil, fmt.Errorf("%s logged no line matching %q (did its t.Logf change?)\n%s", test, re, tail(b.String(), 2000))
	}
	vs := make([]float64, 0, len(m)-1)
	for _, s := range m[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d, derr := time.ParseDuration(s)
			if derr != nil {
				return nil, fmt.Errorf("%s: %q is not a number", test, s)
			}
			v = d.Seconds()
		}
		vs = append(vs, v)
	}
	return vs, nil
}

var (
	// TestFloodDetection's line, per subtest (detect/scenario).
	floodLine = regexp.MustCompile(`(\d+) flood sources: fast (\d+)/(\d+) caught, slow (\d+)/(\d+) caught, (\d+) false bans; heap growth ([\d.]+) MiB \(peak ([\d.]+) MiB\), process peak RSS ([\d.]+) MiB, (\S+)`)
	// TestFloodOfAttackers' line.
	attackersLine = regexp.MustCompile(`(\d+) attackers: (\d+) banned by ssh-bf; heap growth ([\d.]+) MiB, process peak RSS ([\d.]+) MiB, (\S+)`)
	// TestExpiryStall's line (enforce).
	expiryLine = regexp.MustCompile(`expiry stall: (\d+) decisions loaded in ([\d.]+) ms expired in ([\d.]+) ms; (\d+) new bans around it: p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms`)
)

// Names of the flood and expiry figures, which Check looks for.
const (
	fromFlood  = "detect/scenario TestFlood"
	fromExpiry = "enforce TestExpiryStall"
)

// runFloods drives the flood tests of detect/scenario: a million distinct
// sources through the buckets (a tenth in the quick mode), brute-forcers
// hidden among them, and a million real attackers. They assert detection,
// no false ban and the heap bound; this reports their figures, and a
// failed assertion as an error. Once: the full flood takes minutes.
func runFloods(ctx context.Context, o *Options, res *Result) error {
	var env []string
	size := "100k"
	if !o.Quick {
		env, size = []string{"MOAT_FLOOD_FULL=1"}, "1M"
	}
	r, err := goTestJSON(ctx, o, "detect/scenario", "^(TestFloodDetection|TestFloodOfAttackers)$", env)
	if err != nil {
		return err
	}
	var errs []string
	add := func(name, unit string, v float64, test string) {
		res.Scale = append(res.Scale, Metric{Name: name, Unit: unit, Value: newStat([]float64{v}), From: fromFlood + strings.TrimPrefix(test, "TestFlood")})
	}
	for _, sub := range []string{"replay", "live"} {
		test := "TestFloodDetection/" + sub
		v, err := r.match(test, floodLine)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p := fmt.Sprintf("%s-source flood (%s): ", size, sub)
		add(p+"brute-forcers caught", "%", 100*(v[1]+v[3])/(v[2]+v[4]), test)
		add(p+"false bans", "sources", v[5], test)
		add(p+"heap growth, peak", "MiB", v[7], test)
		add(p+"process peak RSS", "MiB", v[8], test)
		add(p+"duration", "s", v[9], test)
		if !r.passed[test] {
			errs = append(errs, test+" failed (detection, false bans or the heap bound)")
		}
	}
	test := "TestFloodOfAttackers"
	if v, err := r.match(test, attackersLine); err != nil {
		errs = append(errs, err.Error())
	} else {
		p := fmt.Sprintf("%s attackers at once: ", size)
		add(p+"banned by ssh-bf", "%", 100*v[1]/v[0], test)
		add(p+"heap growth", "MiB", v[2], test)
		add(p+"process peak RSS", "MiB", v[3], test)
		add(p+"duration", "s", v[4], test)
		if !r.passed[test] {
			errs = append(errs, test+" failed (an attacker not banned)")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// runExpiryStall drives enforce's TestExpiryStall, o.Reps times: 100k
// decisions expiring at one instant over nftables, new bans timed through
// it. The test fails when their p99 passes its bound.
func runExpiryStall(ctx context.Context, o *Options, res *Result) error {
	const test = "TestExpiryStall"
	var loaded, took, p50, p99, mx, n []float64
	var errs []string
	for rep := range o.Reps {
		logf(o.Log, "expiry stall, run %d/%d", rep+1, o.Reps)
		r, err := goTestJSON(ctx, o, "enforce", "^"+test+"$", nil)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		v, err := r.match(test, expiryLine)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if !r.passed[test] {
			errs = append(errs, fmt.Sprintf("%s failed: new bans p99 %.1f ms while the decisions expired", test, v[5]))
		}
		loaded, took, n = append(loaded, v[1]), append(took, v[2]), append(n, v[3])
		p50, p99, mx = append(p50, v[4]), append(p99, v[5]), append(mx, v[6])
	}
	if len(took) > 0 {
		const p = "100k decisions expiring at once (nftables): "
		for _, m := range []struct {
			name, unit string
			vs         []float64
		}{
			{"load", "ms", loaded},
			{"expiry pass, instant to last removed", "ms", took},
			{"new bans timed around it", "bans", n},
			{"new ban p50", "ms", p50},
			{"new ban p99", "ms", p99},
			{"new ban max", "ms", mx},
		} {
			res.Scale = append(res.Scale, Metric{Name: p + m.name, Unit: m.unit, Value: newStat(m.vs), From: fromExpiry})
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
