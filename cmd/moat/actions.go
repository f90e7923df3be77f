package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/action"
	"github.com/moatsec/moat/enforce/api"
)

func (a *app) actionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "actions",
		Aliases: []string{"action"},
		Short:   "List the commands run on bans and unbans, with their counters",
		Long: `Actions are commands configured under actions: in moat.yaml, run by the
daemon once a ban is in the kernel (or has left it), off the ban path: a
full queue drops events and counts them. See docs/actions.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the actions: command, queue, runs by result and dropped events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			as, err := c.Actions(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			return actionListing.render(a.stdout, format, as)
		},
	})
	return cmd
}

var actionListing = listing[api.ActionStats]{
	columns: []column[api.ActionStats]{
		{"NAME", func(s api.ActionStats) string { return s.Name }},
		{"COMMAND", func(s api.ActionStats) string { return s.Command }},
		{"QUEUE", func(s api.ActionStats) string { return fmt.Sprintf("%d/%d", s.Queued, s.QueueCap) }},
		{"OK", func(s api.ActionStats) string { return strconv.FormatUint(s.Runs[action.ResultOK], 10) }},
		{"FAILED", actionFailures},
		{"DROPPED", func(s api.ActionStats) string { return strconv.FormatUint(s.Dropped, 10) }},
	},
	raw:   func(s api.ActionStats) string { return s.Name },
	empty: "No actions (actions: in moat.yaml).",
}

// actionFailures is the runs that did not exit 0, by result ("exit=2
// timeout=1"), or 0.
func actionFailures(s api.ActionStats) string {
	var parts []string
	for r, n := range s.Runs {
		if r != action.ResultOK && n > 0 {
			parts = append(parts, string(r)+"="+strconv.FormatUint(n, 10))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
