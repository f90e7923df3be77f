package metrics

import (
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// ActionStat is one action's counters, copied from enforce/action at
// scrape time.
type ActionStat struct {
	Name string
	// Runs counts finished runs by result (ok, exit, timeout, start,
	// template, stopped); Exits by exit status, -1 for a killed command.
	Runs  map[string]uint64
	Exits map[int]uint64
	// Dropped counts events a full queue refused; Queued waits now.
	Dropped uint64
	Queued  int
	Seconds float64
}

// Actions reads the actions' counters.
type Actions interface {
	ActionStats() []ActionStat
}

// ActionCollector exposes the actions' counters, built at scrape time.
// Register it with Server.Registry.
type ActionCollector struct {
	a                                    Actions
	runs, exits, dropped, queue, seconds *prometheus.Desc
}

// NewActionCollector returns the collector over a.
func NewActionCollector(a Actions) *ActionCollector {
	return &ActionCollector{
		a:       a,
		runs:    desc("moat_action_runs_total", "Action command runs by result: ok (exit 0), exit (another status), timeout (killed), start, template or stopped.", "action", "result"),
		exits:   desc("moat_action_exit_status_total", "Action command runs by exit status; -1 is a command killed by a signal.", "action", "status"),
		dropped: desc("moat_action_dropped_total", "Ban and unban events a full action queue dropped.", "action"),
		queue:   desc("moat_action_queue_length", "Events waiting in an action's queue.", "action"),
		seconds: desc("moat_action_run_seconds_total", "Time action commands spent running.", "action"),
	}
}

func (c *ActionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.runs, c.exits, c.dropped, c.queue, c.seconds} {
		ch <- d
	}
}

func (c *ActionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.a.ActionStats() {
		results := make([]string, 0, len(s.Runs))
		for r := range s.Runs {
			results = append(results, r)
		}
		sort.Strings(results)
		for _, r := range results {
			counter(ch, c.runs, s.Runs[r], s.Name, r)
		}
		for code, n := range s.Exits {
			counter(ch, c.exits, n, s.Name, strconv.Itoa(code))
		}
		counter(ch, c.dropped, s.Dropped, s.Name)
		gauge(ch, c.queue, float64(s.Queued), s.Name)
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.CounterValue, s.Seconds, s.Name)
	}
}
