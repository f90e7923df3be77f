package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/api"
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
