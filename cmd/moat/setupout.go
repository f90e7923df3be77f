package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// printSetup prints moat setup's result: -o json the whole result, -o raw
// each service found and its status, a table the plan in sections.
func printSetup(w io.Writer, format string, res setupResult) error {
	var raw []string
	for _, s := range res.Plan.Services {
		raw = append(raw, s.Name+" "+s.Status)
	}
	return result{value: res, raw: raw, text: func(w io.Writer) error { return setupTables(w, res) }}.render(w, format)
}

func setupTables(out io.Writer, res setupResult) error {
	w := bufio.NewWriter(out)
	p := res.Plan
	if len(p.Services) == 0 {
		fmt.Fprintf(w, "no service moat knows was found under %s\n", esc(res.Root))
	} else {
		var rows [][]string
		for _, s := range p.Services {
			src := dash(s.Source)
			if s.ReadBy != "" {
				src += " (" + s.ReadBy + ")"
			}
			rows = append(rows, []string{s.Name, s.Status, src, dash(s.Collection), strings.Join(s.Evidence, ", ")})
		}
		if err := table(w, []string{"SERVICE", "STATUS", "READ BY", "COLLECTION", "EVIDENCE"}, rows); err != nil {
			return err
		}
	}
	if len(p.Acquisition) > 0 {
		fmt.Fprintf(w, "\nacquisition, in %s:\n", esc(res.File))
		var rows [][]string
		for _, e := range p.Acquisition {
			rows = append(rows, []string{e.Name, e.Source, strings.Join(append(e.Filenames, e.JournalFilter...), " "), e.Type, strings.Join(e.Services, ", ")})
		}
		if err := table(w, []string{"NAME", "SOURCE", "READS", "TYPE", "SERVICES"}, rows); err != nil {
			return err
		}
	}
	if len(p.Carry) > 0 {
		fmt.Fprintf(w, "\nshipped acquisition files copied beside it (the directory is new): %s\n", esc(strings.Join(p.Carry, ", ")))
	}
	if len(p.Hub) > 0 {
		fmt.Fprintln(w, "\ncollections:")
		var rows [][]string
		for _, it := range p.Hub {
			rows = append(rows, []string{it.Name, it.Action, strings.Join(it.Services, ", "), it.Note})
		}
		if err := table(w, []string{"COLLECTION", "ACTION", "SERVICES", "NOTE"}, rows); err != nil {
			return err
		}
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", esc(n))
	}
	if !res.DryRun {
		fmt.Fprintln(w)
		for _, f := range res.Written {
			fmt.Fprintf(w, "wrote %s\n", esc(f))
		}
		if len(res.Written) == 0 {
			fmt.Fprintf(w, "%s: nothing to write\n", esc(res.File))
		}
		if len(res.HubChanges) > 0 {
			if err := changeListing.render(w, "table", res.HubChanges); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}
