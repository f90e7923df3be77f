package main

import (
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
			switch format {
			case "json":
				return writeJSONOut(a.stdout, nb)
			case "raw":
				_, err := fmt.Fprintln(a.stdout, nb.Key)
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "API key for %q:\n\n    %s\n\nKeep it now: it will not be shown again.\n", nb.Name, nb.Key)
			return err
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

func writeBouncers(w io.Writer, format string, bs []api.Bouncer) error {
	switch format {
	case "json":
		if bs == nil {
			bs = []api.Bouncer{}
		}
		return writeJSONOut(w, bs)
	case "raw":
		for _, b := range bs {
			if _, err := fmt.Fprintln(w, esc(b.Name)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(bs) == 0 {
		_, err := fmt.Fprintln(w, "No bouncers.")
		return err
	}
	rows := make([][]string, 0, len(bs))
	for _, b := range bs {
		ip, ua := b.LastIP, b.UserAgent
		if ip == "" {
			ip = "-"
		}
		if ua == "" {
			ua = "-"
		}
		rows = append(rows, []string{b.Name, fmtTime(b.CreatedAt), fmtTime(b.LastSeen), ip, ua})
	}
	return table(w, []string{"NAME", "CREATED", "LAST PULL", "IP", "USER AGENT"}, rows)
}

func (a *app) bouncersDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"remove"},
		Short:   "Delete a bouncer; its key stops working at once",
		Args:    oneName("delete"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.outputFormat("table"); err != nil {
				return err
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteBouncer(cmd.Context(), args[0]); err != nil {
				return adminError(err)
			}
			if a.output == "raw" || a.output == "json" {
				return nil
			}
			_, err = fmt.Fprintf(a.stdout, "Bouncer %q deleted.\n", args[0])
			return err
		},
	}
}
