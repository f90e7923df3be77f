package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show what the running daemon reads, detects and enforces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			a.hubStatus(cmd, st.Counters)
			return writeStatusOut(a.stdout, format, st, time.Now())
		},
	}
}

func writeStatusOut(w io.Writer, format string, st api.Status, now time.Time) error {
	return result{
		value: st,
		raw: []string{
			fmt.Sprintf("active_decisions %d", st.Store.ActiveDecisions),
			fmt.Sprintf("alerts %d", st.Store.Alerts),
			fmt.Sprintf("bouncers %d", st.Store.Bouncers),
		},
		text: func(w io.Writer) error { return writeStatus(w, st, now) },
	}.render(w, format)
}

func writeStatus(w io.Writer, st api.Status, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "moat %s", esc(st.Version))
	if !st.StartedAt.IsZero() {
		fmt.Fprintf(&b, ", up %s", now.Sub(st.StartedAt).Round(time.Second))
	}
	b.WriteString("\n")
	writeGeoStatus(&b, st.GeoIP)
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	var rows [][]string
	for _, s := range st.Sources {
		state := "ok"
		if s.Error != "" {
			state = s.Error
		}
		rows = append(rows, []string{s.Kind, s.Name, fmt.Sprint(s.Lines), state})
	}
	if len(rows) > 0 {
		if err := table(w, []string{"SOURCE", "NAME", "LINES", "STATE"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	rows = nil
	for _, bk := range st.Backends {
		state := "ok"
		if bk.Error != "" {
			state = bk.Error
		}
		mode := bk.Mode
		if mode == "" {
			mode = "-"
		}
		rows = append(rows, []string{bk.Name, mode, fmt.Sprint(bk.Entries), state})
	}
	if len(rows) > 0 {
		if err := table(w, []string{"BACKEND", "MODE", "ENTRIES", "STATE"}, rows); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	rows = [][]string{
		{"parsers", fmt.Sprint(len(st.Parsers))},
		{"scenarios", fmt.Sprint(len(st.Scenarios))},
		{"simulation", simulationSummary(st.Counters["scenarios_simulated"], len(st.Scenarios))},
		{"active decisions", fmt.Sprint(st.Store.ActiveDecisions)},
		{"decisions in history", fmt.Sprint(st.Store.Decisions)},
		{"alerts", fmt.Sprint(st.Store.Alerts)},
		{"alerts since start", fmt.Sprint(st.Service.Alerts)},
		{"decisions since start", fmt.Sprint(st.Service.Decisions)},
		{"allowlisted sources skipped", fmt.Sprint(st.Service.Allowlisted)},
		{"allowlist entries (cli)", fmt.Sprint(st.Store.Allowlist)},
		{"bouncers", fmt.Sprint(len(st.Bouncers))},
		{"store size", fmt.Sprintf("%.1f MiB", float64(st.Store.FileBytes)/(1<<20))},
	}
	keys := make([]string, 0, len(st.Counters))
	for k := range st.Counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rows = append(rows, []string{k, fmt.Sprint(st.Counters[k])})
	}
	return table(w, []string{"COUNT", "VALUE"}, rows)
}

// writeGeoStatus says whether GeoIP is loaded and from which files.
func writeGeoStatus(b *strings.Builder, g *api.GeoIPStatus) {
	if g == nil {
		b.WriteString("GeoIP: off (no geoip: databases configured)\n")
		return
	}
	var files []string
	for _, f := range []struct{ kind, path string }{{"city", g.City}, {"asn", g.ASN}} {
		if f.path != "" {
			files = append(files, f.kind+" "+esc(f.path))
		}
	}
	fmt.Fprintf(b, "GeoIP: loaded (%s); %d Country/AS decisions banning %d ranges\n", strings.Join(files, ", "), g.Decisions, g.Ranges)
}
