package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
)

func (a *app) allowlistCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "allowlist",
		Aliases: []string{"allowlists"},
		Short:   "Manage addresses and ranges that are never banned",
		Long: `Manage the allowlist kept in the daemon's store. Entries from the
configuration file's allowlist: are listed too but only the file removes them.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.allowlistAddCmd(), a.allowlistListCmd(), a.allowlistDeleteCmd())
	return cmd
}

// allowValue checks an IP or CIDR argument.
func allowValue(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", usagef("%q: want an IP address or CIDR range", s)
		}
		return p.Masked().String(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return "", usagef("%q: want an IP address or CIDR range", s)
	}
	return addr.String(), nil
}

func (a *app) allowlistAddCmd() *cobra.Command {
	var reason string
	var wide bool
	cmd := &cobra.Command{
		Use:     "add VALUE",
		Short:   "Allowlist an address or range, lifting its current bans",
		Example: "  moat allowlist add 203.0.113.10 --reason 'monitoring'\n  moat allowlist add 198.51.100.0/24 --reason 'office'",
		Args:    oneName("add"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			value, err := allowValue(args[0])
			if err != nil {
				return err
			}
			if reason == "" {
				return usagef("--reason is required: say why this source is trusted")
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			res, err := c.AddAllow(cmd.Context(), api.AllowRequest{Value: value, Reason: reason, AllowWide: wide})
			if err != nil {
				return adminError(err)
			}
			return result{value: res, raw: []string{value}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s allowlisted; %d active decision(s) lifted.\n", value, len(res.Lifted))
				return err
			}}.render(a.stdout, format)
		},
	}
	cmd.Flags().StringVarP(&reason, "reason", "R", "", "why this source is trusted (required)")
	cmd.Flags().BoolVar(&wide, "allow-wide", false, "accept a range wider than /8 (IPv4) or /32 (IPv6): it lifts every ban inside it")
	return cmd
}

func (a *app) allowlistListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List allowlist entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			es, err := c.Allowlist(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			return writeAllowlist(a.stdout, format, es)
		},
	}
}

// allowListing prints allowlist entries, the configuration's and the CLI's.
var allowListing = listing[decision.AllowEntry]{
	columns: []column[decision.AllowEntry]{
		{"VALUE", func(e decision.AllowEntry) string { return allowString(e.Value) }},
		{"SOURCE", func(e decision.AllowEntry) string {
			if e.Config {
				return "config"
			}
			return "cli"
		}},
		{"REASON", func(e decision.AllowEntry) string { return e.Reason }},
		{"CREATED", func(e decision.AllowEntry) string { return fmtTime(e.Created) }},
	},
	raw:   func(e decision.AllowEntry) string { return allowString(e.Value) },
	empty: "No allowlist entries.",
}

func writeAllowlist(w io.Writer, format string, es []decision.AllowEntry) error {
	return allowListing.render(w, format, es)
}

func allowString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func (a *app) allowlistDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete VALUE",
		Aliases: []string{"remove"},
		Short:   "Remove an allowlist entry",
		Args:    oneName("delete"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.outputFormat("table"); err != nil {
				return err
			}
			value, err := allowValue(args[0])
			if err != nil {
				return err
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteAllow(cmd.Context(), value); err != nil {
				return adminError(err)
			}
			if a.output == "raw" || a.output == "json" {
				return nil
			}
			_, err = fmt.Fprintf(a.stdout, "%s removed from the allowlist.\n", value)
			return err
		},
	}
}
