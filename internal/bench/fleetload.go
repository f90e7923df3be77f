package bench

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// fleetLoadLine is the summary line of enforce/api's TestFleetStreamLoad.
var fleetLoadLine = regexp.MustCompile(`fleet load summary: streams (\d+), alerts/s (\d+), push p50 ms ([\d.]+), push p99 ms ([\d.]+), propagation p50 ms ([\d.]+), propagation p99 ms ([\d.]+), cpu ms per 1k alerts: server (\d+), postgres (\d+), agents (\d+), softirq (\d+), alerts per group commit ([\d.]+), other work cores ([\d.]+)`)

// fromFleet names the fleet load figures, which Check looks for.
const fromFleet = "enforce/api TestFleetStreamLoad"

// runFleetLoad drives TestFleetStreamLoad (enforce/api): alerts pushed
// into a fleet server on PostgreSQL for 15 s while 1,000 agents stream
// the decisions (200 for 3 s in the quick mode), and again with one, each
// o.Reps times, interleaved. The test asserts that every stream received
// every decision and the rate target (see its comment); this reports its
// figures, and a failed assertion as an error.
func runFleetLoad(ctx context.Context, o *Options, res *Result) error {
	var args []string
	many := "1,000 streams"
	if o.Quick {
		args, many = []string{"-short"}, "200 streams"
	}
	const test = "TestFleetStreamLoad"
	configs := []struct {
		name string
		env  []string
		vs   [][]float64 // by submatch of fleetLoadLine
	}{
		{name: many},
		{name: "1 stream", env: []string{"MOAT_FLEET_LOAD_STREAMS=1"}},
	}
	var errs []string
	for rep := range o.Reps {
		for i := range configs {
			c := &configs[i]
			logf(o.Log, "fleet load, %s, run %d/%d", c.name, rep+1, o.Reps)
			r, err := goTestJSON(ctx, o, "enforce/api", "^"+test+"$", c.env, args...)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			v, err := r.match(test, fleetLoadLine)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if !r.passed[test] {
				errs = append(errs, fmt.Sprintf("%s with %s failed (a stream missed decisions, or the rate target): %.0f alerts/s", test, c.name, v[1]))
			}
			if c.vs == nil {
				c.vs = make([][]float64, len(v))
			}
			for k := range v {
				c.vs[k] = append(c.vs[k], v[k])
			}
		}
	}
	for _, c := range configs {
		if c.vs == nil {
			continue
		}
		p := "fleet server on PostgreSQL, " + c.name + ": "
		for _, m := range []struct {
			name, unit string
			k          int // submatch of fleetLoadLine, from 0
		}{
			{"alerts stored", "alerts/s", 1},
			{"push of 20 alerts p50", "ms", 2},
			{"push of 20 alerts p99", "ms", 3},
			{"propagation p50, push sent to agents holding the ban", "ms", 4},
			{"propagation p99", "ms", 5},
			{"server CPU per 1,000 alerts", "ms", 6},
			{"PostgreSQL CPU per 1,000 alerts", "ms", 7},
			{"agents' CPU per 1,000 alerts (all in one process)", "ms", 8},
			{"softirq CPU per 1,000 alerts (loopback; in the three above)", "ms", 9},
			{"alerts per group commit", "alerts", 10},
			{"other work on the machine meanwhile", "cores", 11},
		} {
			res.Scale = append(res.Scale, Metric{Name: p + m.name, Unit: m.unit, Value: newStat(c.vs[m.k]), From: fromFleet})
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
