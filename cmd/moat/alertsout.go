package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// alertRow is one alert as replay prints it.
type alertRow struct {
	Source    string    `json:"source"`
	Scope     string    `json:"scope"`
	Scenario  string    `json:"scenario"`
	Events    int       `json:"events"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Simulated bool      `json:"simulated,omitempty"`
}

func alertRows(alerts []model.Alert) []alertRow {
	rows := make([]alertRow, 0, len(alerts))
	for _, a := range alerts {
		rows = append(rows, alertRow{
			Source: a.Value, Scope: a.Scope, Scenario: a.Scenario, Events: a.EventsCount,
			FirstSeen: a.Start.UTC(), LastSeen: a.Stop.UTC(), Simulated: a.Simulated,
		})
	}
	// Stable output: by first event, then scenario and source.
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].FirstSeen.Equal(rows[j].FirstSeen) {
			return rows[i].FirstSeen.Before(rows[j].FirstSeen)
		}
		if rows[i].Scenario != rows[j].Scenario {
			return rows[i].Scenario < rows[j].Scenario
		}
		return rows[i].Source < rows[j].Source
	})
	return rows
}

func writeAlerts(w io.Writer, format string, alerts []model.Alert) error {
	rows := alertRows(alerts)
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "raw":
		for _, r := range rows {
			if _, err := fmt.Fprintln(w, esc(r.Source)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSCENARIO\tEVENTS\tFIRST SEEN\tLAST SEEN")
	for _, r := range rows {
		sc := esc(r.Scenario)
		if r.Simulated {
			sc += " (simulated)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", esc(r.Source), sc, r.Events, r.FirstSeen.Format(time.DateTime), r.LastSeen.Format(time.DateTime))
	}
	fmt.Fprintf(tw, "%d alerts\n", len(rows))
	return tw.Flush()
}
