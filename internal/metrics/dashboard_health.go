package metrics

import (
	dto "github.com/prometheus/client_model/go"
)

// actionRow is one action's health.
type actionRow struct {
	Action string
	// OK counts runs that exited 0, Failed those that did not (another
	// status, a timeout, a start or template error); runs cut short by
	// a stop count in neither.
	OK, Failed, Dropped, Queued float64
	// AvgSeconds is the mean run time, NaN before the first run.
	AvgSeconds float64
	Health     string
}

// actionRows reads the actions' health from the scrape, where
// ActionCollector put their counters, judged as notifyRows judges
// channels.
func actionRows(fams map[string]*dto.MetricFamily) []actionRow {
	type acc struct {
		actionRow
		runs, seconds float64
	}
	by := map[string]*acc{}
	get := func(l map[string]string) *acc {
		return row(by, l["action"], func() *acc { return &acc{actionRow: actionRow{Action: l["action"]}} })
	}
	for _, x := range each(fams, "moat_action_runs_total") {
		a := get(x.labels)
		switch x.labels["result"] {
		case "ok":
			a.OK += x.value
		case "stopped":
		default:
			a.Failed += x.value
		}
		a.runs += x.value
	}
	for _, x := range each(fams, "moat_action_dropped_total") {
		get(x.labels).Dropped = x.value
	}
	for _, x := range each(fams, "moat_action_queue_length") {
		get(x.labels).Queued = x.value
	}
	for _, x := range each(fams, "moat_action_run_seconds_total") {
		get(x.labels).seconds = x.value
	}
	accs := sortedRows(by, func(a, b acc) bool { return a.Action < b.Action })
	out := make([]actionRow, len(accs))
	for i, a := range accs {
		r := a.actionRow
		r.AvgSeconds = a.seconds / a.runs // NaN with no runs: shown as "-"
		r.Health = health(r.OK, r.Failed, r.Dropped)
		out[i] = r
	}
	return out
}

// health judges a channel or an action by its counters since start: one
// that failed everything it tried is failing; one that failed or dropped
// some is degraded.
func health(ok, failed, dropped float64) string {
	switch {
	case failed > 0 && ok == 0:
		return "failing"
	case failed > 0 || dropped > 0:
		return "degraded"
	}
	return "ok"
}
