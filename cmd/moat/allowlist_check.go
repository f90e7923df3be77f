package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/api"
)

func (a *app) allowlistCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "check IP",
		Short:   "Say which allowlist entry protects an address, if any",
		Example: "  moat allowlist check 203.0.113.10",
		Args:    oneName("check"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
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
			res, err := c.CheckAllow(cmd.Context(), value)
			if err != nil {
				return adminError(err)
			}
			return writeAllowCheck(a.stdout, format, res)
		},
	}
}

// allowCheckListing prints the entries protecting an address.
var allowCheckListing = listing[dynallow.Match]{
	columns: []column[dynallow.Match]{
		{"ENTRY", func(m dynallow.Match) string { return m.Value }},
		{"PROTECTS", func(m dynallow.Match) string { return allowString(m.Prefix) }},
		{"SOURCE", func(m dynallow.Match) string { return m.Where() }},
		{"COMMENT", func(m dynallow.Match) string { return m.Comment }},
		{"EXPIRES", func(m dynallow.Match) string { return fmtExpiry(m.Expires) }},
	},
	raw: func(m dynallow.Match) string { return m.Value },
}

func writeAllowCheck(w io.Writer, format string, res api.AllowCheck) error {
	if format != "table" {
		return result{value: res, raw: rawEntries(res), text: nil}.render(w, format)
	}
	var err error
	switch {
	case len(res.Entries) > 0:
		_, err = fmt.Fprintf(w, "%s is protected by %d allowlist entr%s:\n", esc(res.Value), len(res.Entries), plural(len(res.Entries), "y", "ies"))
	case res.Builtin != "":
		_, err = fmt.Fprintf(w, "%s is protected: no allowlist entry covers it, but moat never bans it (%s).\n", esc(res.Value), esc(res.Builtin))
		return err
	default:
		_, err = fmt.Fprintf(w, "%s is not protected: no allowlist entry covers it.\n", esc(res.Value))
		return err
	}
	if err != nil {
		return err
	}
	return allowCheckListing.render(w, format, res.Entries)
}

func rawEntries(res api.AllowCheck) []string {
	var out []string
	for _, m := range res.Entries {
		out = append(out, m.Value)
	}
	return out
}

func fmtExpiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
