package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/config"
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
	cmd.AddCommand(a.allowlistAddCmd(), a.allowlistListCmd(), a.allowlistDeleteCmd(), a.allowlistCheckCmd())
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
	var reason, expires string
	var wide bool
	var lasts time.Duration
	cmd := &cobra.Command{
		Use:     "add VALUE",
		Short:   "Allowlist an address or range, lifting its current bans",
		Example: "  moat allowlist add 203.0.113.10 --reason 'monitoring'\n  moat allowlist add 198.51.100.0/24 --comment 'office'\n  moat allowlist add 192.0.2.7 --comment 'vendor support' --for 24h\n  moat allowlist add 192.0.2.8 --comment 'audit' --expires 2027-01-01T00:00:00Z",
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
				return usagef("--comment (or --reason) is required: say why this source is trusted")
			}
			if cmd.Flags().Changed("expires") && cmd.Flags().Changed("for") {
				return usagef("--expires and --for both say when the entry ends: give one")
			}
			until, err := allowExpiry(expires, lasts, time.Now())
			if err != nil {
				return err
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			var res api.AllowResponse
			if until.IsZero() {
				res, err = c.AddAllow(cmd.Context(), api.AllowRequest{Value: value, Reason: reason, AllowWide: wide})
			} else {
				res, err = c.AddAllowEntry(cmd.Context(), api.AllowEntryRequest{Value: value, Comment: reason, Expires: until, AllowWide: wide})
			}
			if err != nil {
				return adminError(err)
			}
			return result{value: res, raw: []string{value}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s allowlisted%s; %d active decision(s) lifted.\n", value, untilText(until), len(res.Lifted))
				return err
			}}.render(a.stdout, format)
		},
	}
	cmd.Flags().StringVarP(&reason, "reason", "R", "", "why this source is trusted (required, or --comment)")
	cmd.Flags().StringVar(&reason, "comment", "", "why this source is trusted (same as --reason)")
	cmd.Flags().StringVar(&expires, "expires", "", "when the entry ends (RFC 3339 time or date); default never")
	cmd.Flags().DurationVar(&lasts, "for", 0, "how long the entry lasts (24h, 30m); default forever")
	cmd.Flags().BoolVar(&wide, "allow-wide", false, "accept a range wider than /8 (IPv4) or /32 (IPv6): it lifts every ban inside it")
	return cmd
}

// allowExpiry is when an entry added now ends: --expires or now + --for;
// zero is never.
func allowExpiry(expires string, lasts time.Duration, now time.Time) (time.Time, error) {
	switch {
	case expires != "":
		t, err := config.ParseExpiry(expires)
		if err != nil {
			return time.Time{}, usagef("--%v", err)
		}
		if !t.After(now) {
			return time.Time{}, usagef("--expires %s is in the past", expires)
		}
		return t, nil
	case lasts < 0:
		return time.Time{}, usagef("--for %s: want a positive duration", lasts)
	case lasts > 0:
		return now.Add(lasts).Truncate(time.Second), nil
	}
	return time.Time{}, nil
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " until " + t.UTC().Format(time.RFC3339)
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
