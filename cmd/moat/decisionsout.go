package main

import (
	"io"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// decisionSample is how many rows of decisions list size the table's
// columns: the list streams, and a million rows held for tabwriter took
// over a gigabyte.
const decisionSample = 256

// decisionListing prints decisions; now is what EXPIRES IN counts from.
func decisionListing(now time.Time) listing[api.Decision] {
	return listing[api.Decision]{
		columns: []column[api.Decision]{
			{"ID", func(d api.Decision) string { return strconv.FormatInt(d.ID, 10) }},
			{"ORIGIN", func(d api.Decision) string { return d.Origin }},
			{"SCOPE:VALUE", func(d api.Decision) string { return d.Scope + ":" + d.Value }},
			{"REASON", decisionReason},
			{"ACTION", decisionAction},
			{"EXPIRES IN", func(d api.Decision) string { return decisionLeft(d, now) }},
			{"ALERT", decisionAlert},
		},
		raw:   func(d api.Decision) string { return d.Value },
		empty: "No decisions.",
	}
}

// writeDecisions prints a list of decisions at once.
func writeDecisions(w io.Writer, format string, ds []api.Decision) error {
	return decisionListing(time.Now()).render(w, format, ds)
}

// decisionReason is the scenario that raised a decision, or the reason a
// person gave.
func decisionReason(d api.Decision) string {
	if d.Scenario != "" {
		return d.Scenario
	}
	return d.Reason
}

func decisionAction(d api.Decision) string {
	if d.Simulated {
		return d.Type + portsSuffix(d) + " (simulated)"
	}
	return d.Type + portsSuffix(d)
}

// portsSuffix names the ports a port-scoped decision bans (" on
// 25,465/tcp"); a plain ban has none.
func portsSuffix(d api.Decision) string {
	if d.Ports == "" {
		return ""
	}
	proto := d.Protocol
	if proto == "" {
		proto = "tcp+udp"
	}
	return " on " + esc(d.Ports) + "/" + esc(proto)
}

// decisionLeft is the time a decision has left; a decision deleted before
// its end says so instead.
func decisionLeft(d api.Decision, now time.Time) string {
	if !d.DeletedAt.IsZero() && (d.Until.IsZero() || d.DeletedAt.Before(d.Until)) {
		return "deleted"
	}
	if d.Until.IsZero() {
		return model.Forever
	}
	return remaining(d.Until, now)
}

func decisionAlert(d api.Decision) string {
	if d.AlertID == 0 {
		return "-"
	}
	return strconv.FormatInt(d.AlertID, 10)
}
