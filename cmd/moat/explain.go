package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/exprenv"
)

func (a *app) explainCmd() *cobra.Command {
	var logType, line string
	var exprs bool
	cmd := &cobra.Command{
		Use:   "explain [--line LINE | FILE | - | --expressions]",
		Short: "Show how lines go through every parser stage and which scenarios they trigger",
		Long: `Shows, for each line, what every parser stage made of it and which scenarios
it was poured into. With --expressions, lists instead the parser and scenario
expressions of the loaded content that still do per-event work a load could
have done (a pattern computed from the event, a helper that fails on constant
arguments): where detection will be slower than it needs to be.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !exprs && (line == "") == (len(args) == 0) {
				return usagef("give either --line or one FILE (- for stdin), or --expressions")
			}
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			c, err := openContent(cfg)
			if err != nil {
				return err
			}
			defer c.cleanup()
			eng, err := loadEngine(cfg, c, true, 0)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			if exprs {
				return dynamicListing.render(a.stdout, format, eng.Env().Dynamic())
			}
			var in io.Reader = strings.NewReader(line + "\n")
			src := "--line"
			if len(args) == 1 {
				src = args[0]
				if args[0] == "-" {
					in = a.stdin
				} else {
					f, err := os.Open(args[0])
					if err != nil {
						return err
					}
					defer f.Close()
					in = f
				}
			}
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				x := eng.Explain(detect.Line{Raw: sc.Text(), Src: src, Module: "file", Labels: map[string]string{"type": logType}, ReadAt: time.Now(), Process: true})
				if err := writeExplanation(a.stdout, format, sc.Text(), x); err != nil {
					return err
				}
			}
			return sc.Err()
		},
	}
	cmd.Flags().StringVar(&logType, "type", "syslog", "acquisition label type: selects the s00 parsers (syslog, nginx, ...)")
	cmd.Flags().StringVar(&line, "line", "", "a single log line to explain")
	cmd.Flags().BoolVar(&exprs, "expressions", false, "list the expressions that do per-event work a load could have done")
	return cmd
}

var dynamicListing = listing[exprenv.Dynamic]{
	columns: []column[exprenv.Dynamic]{
		{"EXPRESSION", func(d exprenv.Dynamic) string { return d.Expr }},
		{"PER-EVENT WORK", func(d exprenv.Dynamic) string { return d.Reason }},
	},
	raw:   func(d exprenv.Dynamic) string { return d.Expr },
	empty: "every expression of the loaded content was compiled once at load",
}

func writeExplanation(w io.Writer, format, raw string, x engine.Explanation) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(struct {
			Line string `json:"line"`
			engine.Explanation
		}{raw, x})
	}
	fmt.Fprintf(w, "line: %s\n", esc(raw))
	for _, st := range x.Stages {
		fmt.Fprintf(w, "  %s\n", esc(st.Stage))
		for _, n := range st.Nodes {
			mark := "✗"
			if n.Success {
				mark = "✓"
			}
			fmt.Fprintf(w, "    %s %s\n", mark, esc(n.Parser))
			for _, g := range n.Groks {
				// The tier that serves the pattern, and the one that
				// answered when an earlier tier gave up on this line.
				tier := g.Tier
				if g.Served != g.Tier {
					tier += ", answered by " + g.Served
				}
				fmt.Fprintf(w, "        grok %s (%s)\n", esc(g.Pattern), tier)
			}
			keys := make([]string, 0, len(n.Set))
			for k := range n.Set {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				// %q escapes non-printable runes and invalid bytes as
				// esc does, and shows where the value ends.
				fmt.Fprintf(w, "        %s = %q\n", esc(k), n.Set[k])
			}
		}
	}
	switch {
	case x.Whitelisted:
		fmt.Fprintln(w, "  => whitelisted")
	case !x.Parsed:
		fmt.Fprintln(w, "  => not parsed")
	default:
		fmt.Fprintln(w, "  => parsed")
	}
	for _, al := range x.Alerts {
		fmt.Fprintf(w, "  => overflow: %s from %s (%d events)\n", esc(al.Scenario), esc(al.Value), al.EventsCount)
	}
	return nil
}
