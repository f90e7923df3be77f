package main

import (
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/internal/model"
)

// decisionFilterFlags are the filters list and delete share.
type decisionFilterFlags struct {
	ip, cidr, value, scope, typ, origin, scenario string
	id                                            int64
}

func (f *decisionFilterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.ip, "ip", "i", "", "decisions covering this IP address")
	fl.StringVarP(&f.cidr, "range", "r", "", "decisions covering this CIDR range")
	fl.StringVar(&f.value, "value", "", "decisions on exactly this value (address, CIDR, country code or AS number)")
	fl.StringVar(&f.scope, "scope", "", "decisions of this scope: ip, range, country or as")
	fl.StringVarP(&f.typ, "type", "t", "", "decision type (ban, captcha, ...)")
	fl.StringVar(&f.origin, "origin", "", "origin: local, cli, api, community, list")
	fl.StringVarP(&f.scenario, "scenario", "s", "", "scenario name containing this text")
	fl.Int64Var(&f.id, "id", 0, "decision ID")
}

func (f *decisionFilterFlags) query() (url.Values, error) {
	q := url.Values{}
	if f.ip != "" {
		a, err := netip.ParseAddr(f.ip)
		if err != nil {
			return nil, usagef("--ip %q: want an IP address", f.ip)
		}
		q.Set("ip", a.String())
	}
	if f.cidr != "" {
		p, err := netip.ParsePrefix(f.cidr)
		if err != nil {
			return nil, usagef("--range %q: want a CIDR range such as 198.51.100.0/24", f.cidr)
		}
		q.Set("range", p.String())
	}
	if f.id < 0 {
		return nil, usagef("--id %d: want a positive ID", f.id)
	}
	if f.id > 0 {
		q.Set("id", strconv.FormatInt(f.id, 10))
	}
	for k, v := range map[string]string{"value": f.value, "scope": f.scope, "type": f.typ, "origin": f.origin, "scenario": f.scenario} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q, nil
}

// filteredRequest is what list and delete read before they call the
// daemon: the output format, checked first so a bad -o is reported whatever
// the filters say, and the filters as a query.
func (a *app) filteredRequest(f *decisionFilterFlags) (format string, q url.Values, err error) {
	if format, err = a.outputFormat("json"); err != nil {
		return "", nil, err
	}
	if q, err = f.query(); err != nil {
		return "", nil, err
	}
	return format, q, nil
}

func (a *app) decisionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "decisions",
		Aliases: []string{"decision"},
		Short:   "List, add and delete decisions (bans) in the running daemon",
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(a.decisionsListCmd(), a.decisionsAddCmd(), a.decisionsDeleteCmd(), a.decisionsImportCmd())
	return cmd
}

// defaultListLimit is how many decisions list shows unless told: a host
// with a blocklist holds a million, more than anyone reads on a terminal.
const defaultListLimit = 100

func (a *app) decisionsListCmd() *cobra.Command {
	var f decisionFilterFlags
	var history, all bool
	var limit int
	var since string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List active decisions",
		Long: `List the active decisions, newest first: the 100 newest unless --limit N
says otherwise; --all lists every one. Decisions are printed as they are
read from the daemon, so a list of millions needs no more memory than a
list of ten. When the table leaves some out, a line on stderr says how many
there are. --history includes expired and deleted ones. --since 2h lists
those created in the last two hours (days too: 7d). -o raw prints one
value per line. Table and raw output show control characters escaped
(\x1b, \\ for a backslash); -o json is exact, a JSON array.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, q, err := a.filteredRequest(&f)
			if err != nil {
				return err
			}
			if history {
				q.Set("history", "true")
			}
			if since != "" {
				if _, forever, err := model.ParseDuration(since); err != nil || forever {
					return usagef("--since %q: want a duration such as 2h or 7d", since)
				}
				q.Set("since", since)
			}
			switch {
			case all && cmd.Flags().Changed("limit"):
				return usagef("give --limit or --all, not both")
			case limit < 1 && !all:
				return usagef("--limit %d: want 1 or more (--all for every decision)", limit)
			case !all:
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			out := decisionListing(time.Now()).writer(a.stdout, format, decisionSample)
			total, err := c.EachDecision(cmd.Context(), q, out.write)
			if err != nil {
				return adminError(err)
			}
			if err := out.close(); err != nil {
				return err
			}
			if format == "table" && total > out.n {
				fmt.Fprintf(a.stderr, "showing %d of %d (use --limit or --all)\n", out.n, total)
			}
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&history, "history", false, "include expired and deleted decisions")
	fl.IntVar(&limit, "limit", defaultListLimit, "show at most this many, newest first")
	fl.BoolVar(&all, "all", false, "show every decision")
	fl.StringVar(&since, "since", "", "only decisions created within this long (2h, 7d)")
	return cmd
}

func (a *app) decisionsDeleteCmd() *cobra.Command {
	var f decisionFilterFlags
	var all bool
	cmd := &cobra.Command{
		Use:     "delete",
		Aliases: []string{"remove"},
		Short:   "Delete decisions (unban)",
		Long: `Delete the active decisions the filters select, from the store and the
kernel. With no filter nothing is deleted unless --all is given.`,
		Example: "  moat decisions delete --ip 198.51.100.7\n  moat decisions delete --id 42\n  moat decisions delete --all",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, q, err := a.filteredRequest(&f)
			if err != nil {
				return err
			}
			switch {
			case all && len(q) > 0:
				return usagef("--all takes no other filter")
			case all:
				q.Set("all", "true")
			case len(q) == 0:
				return usagef("say which decisions to delete (--ip, --range, --id, ...) or pass --all")
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			res, err := c.DeleteDecisions(cmd.Context(), q)
			if err != nil {
				return adminError(err)
			}
			values := make([]string, len(res.Decisions))
			for i, d := range res.Decisions {
				values[i] = d.Value
			}
			return result{value: res, raw: values, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%d decision(s) deleted.\n", res.Deleted)
				return err
			}}.render(a.stdout, format)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "delete every active decision")
	return cmd
}
