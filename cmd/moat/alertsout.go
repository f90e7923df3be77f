package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// replayListing prints the alerts a replay raised. -o json has the schema
// of moat alerts list -o json, so one script reads both; the table shows
// times in UTC, as the logs replayed are rarely from this host's zone.
var replayListing = listing[api.Alert]{
	columns: []column[api.Alert]{
		{"SOURCE", func(al api.Alert) string { return al.Value }},
		{"SCENARIO", func(al api.Alert) string {
			if al.Simulated {
				return al.Scenario + " (simulated)"
			}
			return al.Scenario
		}},
		{"EVENTS", func(al api.Alert) string { return strconv.Itoa(al.EventsCount) }},
		{"FIRST SEEN", func(al api.Alert) string { return al.Start.Format(time.DateTime) }},
		{"LAST SEEN", func(al api.Alert) string { return al.Stop.Format(time.DateTime) }},
	},
	raw:    func(al api.Alert) string { return al.Value },
	footer: func(n int) string { return fmt.Sprintf("%d alerts", n) },
}

// replayAlerts are alerts as replay prints them: in UTC, by first event,
// then scenario and source, so the same logs always print the same.
func replayAlerts(alerts []model.Alert) []api.Alert {
	out := make([]api.Alert, 0, len(alerts))
	for _, a := range alerts {
		al := api.AlertOf(a)
		al.Start, al.Stop = al.Start.UTC(), al.Stop.UTC()
		out = append(out, al)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		if out[i].Scenario != out[j].Scenario {
			return out[i].Scenario < out[j].Scenario
		}
		return out[i].Value < out[j].Value
	})
	return out
}

func writeAlerts(w io.Writer, format string, alerts []model.Alert) error {
	return replayListing.render(w, format, replayAlerts(alerts))
}
