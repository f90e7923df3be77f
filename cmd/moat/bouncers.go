package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
)

func (a *app) bouncersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "bouncers",
		Aliases: []string{"bouncer"},
		Short:   "Manage the API keys of bouncers (CrowdSec-compatible clients)",
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(a.bouncersAddCmd(), a.bouncersListCmd(), a.bouncersDeleteCmd())
	return cmd
}

func oneName(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%s takes exactly one name", what)
		}
		return nil
	}
}

func (a *app) bouncersAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME",
		Short: "Register a bouncer and print its API key (shown only this once)",
		Long: `Register a bouncer and print its API key. The key is shown only this once;
moat keeps only its hash. -o raw prints the key alone, for scripts.`,
		Example: "  moat bouncers add firewall -o raw > /etc/crowdsec/bouncers/key",
		Args:    oneName("add"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			nb, err := c.AddBouncer(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			return result{value: nb, raw: []string{nb.Key}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "API key for %q:\n\n    %s\n\nKeep it now: it will not be shown again.\n", nb.Name, nb.Key)
				return err
			}}.render(a.stdout, format)
		},
	}
}

func (a *app) bouncersListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered bouncers and when they last pulled",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			bs, err := c.Bouncers(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			return writeBouncers(a.stdout, format, bs)
		},
	}
}

// bouncerListing prints registered bouncers; "-" stands for what a
// bouncer that never pulled has not told.
var bouncerListing = listing[api.Bouncer]{
	columns: []column[api.Bouncer]{
		{"NAME", func(b api.Bouncer) string { return b.Name }},
		{"CREATED", func(b api.Bouncer) string { return fmtTime(b.CreatedAt) }},
		{"LAST PULL", func(b api.Bouncer) string { return fmtTime(b.LastSeen) }},
		{"IP", func(b api.Bouncer) string { return orDash(b.LastIP) }},
		{"USER AGENT", func(b api.Bouncer) string { return orDash(b.UserAgent) }},
	},
	raw:   func(b api.Bouncer) string { return b.Name },
	empty: "No bouncers.",
}

func writeBouncers(w io.Writer, format string, bs []api.Bouncer) error {
	return bouncerListing.render(w, format, bs)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) bouncersDeleteCmd() *cobra.Command {
	return a.deleteNamedCmd("Bouncer", "Delete a bouncer; its key stops working at once", (*api.Client).DeleteBouncer)
}

// deleteNamedCmd is the delete command of a kind of named client
// (bouncers, machines): one name, the admin call, a line saying it is gone
// (none with -o raw or json).
func (a *app) deleteNamedCmd(kind, short string, del func(*api.Client, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"remove"},
		Short:   short,
		Args:    oneName("delete"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.outputFormat("table"); err != nil {
				return err
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			if err := del(c, cmd.Context(), args[0]); err != nil {
				return adminError(err)
			}
			if a.output == "raw" || a.output == "json" {
				return nil
			}
			_, err = fmt.Fprintf(a.stdout, "%s %q deleted.\n", kind, esc(args[0]))
			return err
		},
	}
}
