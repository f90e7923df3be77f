package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
)

func (a *app) alertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "alerts",
		Aliases: []string{"alert"},
		Short:   "List and inspect the alerts the daemon raised",
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(a.alertsListCmd(), a.alertsInspectCmd())
	return cmd
}

func (a *app) alertsListCmd() *cobra.Command {
	var scenario, value string
	var since time.Duration
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List alerts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			if limit < 1 || limit > 100000 {
				return usagef("--limit %d: want 1 to 100000", limit)
			}
			if since < 0 {
				return usagef("--since %s: want a positive duration", since)
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if scenario != "" {
				q.Set("scenario", scenario)
			}
			if value != "" {
				q.Set("value", value)
			}
			if since > 0 {
				q.Set("since", since.String())
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			alerts, err := c.Alerts(cmd.Context(), q)
			if err != nil {
				return adminError(err)
			}
			return writeAlertList(a.stdout, format, alerts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&scenario, "scenario", "s", "", "scenario name containing this text")
	fl.StringVarP(&value, "ip", "i", "", "alerts from this source value (address or range)")
	fl.DurationVar(&since, "since", 0, "only alerts of the last DURATION (e.g. 24h)")
	fl.IntVar(&limit, "limit", 50, "show at most this many")
	return cmd
}

// alertListing prints the alerts the daemon stored, newest first.
var alertListing = listing[api.Alert]{
	columns: []column[api.Alert]{
		{"ID", func(al api.Alert) string { return strconv.FormatInt(al.ID, 10) }},
		{"SCOPE:VALUE", func(al api.Alert) string { return al.Scope + ":" + al.Value }},
		{"SCENARIO", func(al api.Alert) string { return al.Scenario }},
		{"EVENTS", func(al api.Alert) string { return strconv.Itoa(al.EventsCount) }},
		{"DECISIONS", func(al api.Alert) string { return decisionIDs(al.Decisions) }},
		{"CREATED", func(al api.Alert) string { return fmtTime(al.CreatedAt) }},
	},
	raw:   func(al api.Alert) string { return strconv.FormatInt(al.ID, 10) },
	empty: "No alerts.",
}

func writeAlertList(w io.Writer, format string, alerts []api.Alert) error {
	return alertListing.render(w, format, alerts)
}

// decisionIDs shows the decisions an alert produced by ID, for moat
// decisions list --id; past three, how many more ("-": none).
func decisionIDs(ids []int64) string {
	if len(ids) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, id := range ids {
		if i == 3 {
			fmt.Fprintf(&b, " +%d", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

func (a *app) alertsInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID",
		Short: "Show one alert in full: context, meta, events and decisions",
		Long: `Show one alert in full: context, meta, events and decisions. The
context is what the hub's context files (hub contexts/) kept of the
alert's events: per key, the distinct values, at most 20 of 512 bytes
each. -o raw prints the scenario and the value on one line. Much of an
alert comes from log lines:
table and raw output show control characters, bidi overrides and invalid
UTF-8 escaped (\x1b, \u202e, \\ for a backslash); -o json is exact.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("inspect takes one alert ID")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("alert ID %q: want a positive integer", args[0])
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			al, err := c.Alert(cmd.Context(), id)
			if err != nil {
				return adminError(err)
			}
			return writeAlertOut(a.stdout, format, al)
		},
	}
}

// writeAlertOut shows one alert: in full, as JSON, or (raw) its scenario
// and value on one line.
func writeAlertOut(w io.Writer, format string, al api.Alert) error {
	return result{
		value: al,
		raw:   []string{al.Scenario + " " + al.Value},
		text:  func(w io.Writer) error { return writeAlert(w, al) },
	}.render(w, format)
}

func writeAlert(w io.Writer, al api.Alert) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Alert %d\n", al.ID)
	fmt.Fprintf(&b, "  Scenario:    %s %s\n", esc(al.Scenario), esc(al.ScenarioVersion))
	fmt.Fprintf(&b, "  Source:      %s:%s\n", esc(al.Scope), esc(al.Value))
	if al.Message != "" {
		fmt.Fprintf(&b, "  Message:     %s\n", esc(al.Message))
	}
	fmt.Fprintf(&b, "  Events:      %d, %s to %s\n", al.EventsCount, fmtTime(al.Start), fmtTime(al.Stop))
	fmt.Fprintf(&b, "  Created:     %s\n", fmtTime(al.CreatedAt))
	fmt.Fprintf(&b, "  Remediation: %v  Simulated: %v\n", al.Remediation, al.Simulated)
	var ids []string
	for _, d := range al.Decisions {
		ids = append(ids, strconv.FormatInt(d, 10))
	}
	if len(ids) > 0 {
		fmt.Fprintf(&b, "  Decisions:   %s\n", strings.Join(ids, ", "))
	}
	writeContext(&b, al.Context)
	writeMap(&b, "Meta", al.Meta)
	writeMap(&b, "Labels", al.Labels)
	for i, ev := range al.Events {
		writeMap(&b, fmt.Sprintf("Event %d", i+1), ev)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeContext shows the alert context, one value a line: values come
// from log lines, and one per line cannot be mistaken for two.
func writeContext(b *strings.Builder, ctx map[string][]string) {
	if len(ctx) == 0 {
		return
	}
	b.WriteString("  Context:\n")
	for _, k := range slices.Sorted(maps.Keys(ctx)) {
		fmt.Fprintf(b, "    %s:\n", esc(k))
		for _, v := range ctx[k] {
			fmt.Fprintf(b, "      %s\n", esc(v))
		}
	}
}

func writeMap(b *strings.Builder, title string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(b, "  %s:\n", title)
	for _, k := range keys {
		fmt.Fprintf(b, "    %s: %s\n", esc(k), esc(m[k]))
	}
}
