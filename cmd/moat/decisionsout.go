package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// decisionWriter prints decisions one at a time as they arrive, through a
// buffer: a write per decision made a million system calls.
type decisionWriter struct {
	w      *bufio.Writer
	format string
	n      int
	tab    *streamTable
	now    time.Time
}

func newDecisionWriter(w io.Writer, format string) *decisionWriter {
	dw := &decisionWriter{w: bufio.NewWriterSize(w, 64<<10), format: format, now: time.Now()}
	if format == "table" {
		dw.tab = newStreamTable(dw.w, []string{"ID", "ORIGIN", "SCOPE:VALUE", "REASON", "ACTION", "EXPIRES IN", "ALERT"}, 256)
	}
	return dw
}

func (dw *decisionWriter) write(d api.Decision) error {
	dw.n++
	switch dw.format {
	case "json":
		// The layout writeJSONOut gives a slice, element by element.
		b, err := json.MarshalIndent(d, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if dw.n == 1 {
			sep = "[\n  "
		}
		_, err = io.WriteString(dw.w, sep+string(b))
		return err
	case "raw":
		_, err := fmt.Fprintln(dw.w, esc(d.Value))
		return err
	}
	return dw.tab.Row(decisionRow(d, dw.now))
}

func (dw *decisionWriter) close() error {
	var err error
	switch dw.format {
	case "json":
		end := "\n]\n"
		if dw.n == 0 {
			end = "[]\n"
		}
		_, err = io.WriteString(dw.w, end)
	case "table":
		var rows bool
		rows, err = dw.tab.Close()
		if err == nil && !rows {
			_, err = fmt.Fprintln(dw.w, "No decisions.")
		}
	}
	if err != nil {
		return err
	}
	return dw.w.Flush()
}

// writeDecisions prints a list of decisions at once.
func writeDecisions(w io.Writer, format string, ds []api.Decision) error {
	dw := newDecisionWriter(w, format)
	for _, d := range ds {
		if err := dw.write(d); err != nil {
			return err
		}
	}
	return dw.close()
}

func decisionRow(d api.Decision, now time.Time) []string {
	left := remaining(d.Until, now)
	if !d.DeletedAt.IsZero() && d.DeletedAt.Before(d.Until) {
		left = "deleted"
	}
	typ := d.Type
	if d.Simulated {
		typ += " (simulated)"
	}
	reason := d.Scenario
	if reason == "" {
		reason = d.Reason
	}
	alert := "-"
	if d.AlertID != 0 {
		alert = strconv.FormatInt(d.AlertID, 10)
	}
	return []string{strconv.FormatInt(d.ID, 10), d.Origin, d.Scope + ":" + d.Value, reason, typ, left, alert}
}
