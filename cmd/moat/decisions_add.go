package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

func (a *app) decisionsAddCmd() *cobra.Command {
	var ip, cidr, scope, value, reason, typ, durationArg, portsArg, proto string
	var simulated bool
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Ban an address, a range, a country or an AS now",
		Long: `Add a decision: --ip or --range, or --scope country or as with --value, for
--duration (default 4h; days such as 7d, or forever: never expires, held in
the kernel without a timeout). The command returns once the decision is
stored and in the kernel.

A country or AS decision bans every network the configured GeoIP database
(geoip: in moat.yaml) assigns to it, leaving out loopback, this host's
addresses and what the allowlist protects. Without that database it is
refused.`,
		Example: "  moat decisions add --ip 198.51.100.7 --reason 'ssh brute force'\n  moat decisions add --range 203.0.113.0/24 --duration 24h\n  moat decisions add --ip 192.0.2.66 --duration forever\n  moat decisions add --ip 192.0.2.9 --ports 25,465 --protocol tcp\n  moat decisions add --scope country --value CN --duration 7d\n  moat decisions add --scope as --value 64496",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			nd, err := newDecisionTarget(ip, cidr, scope, value)
			if err != nil {
				return err
			}
			duration, forever, err := model.ParseDuration(durationArg)
			if err != nil || duration > api.MaxDuration {
				return usagef("--duration %s: want a positive duration up to %s, or forever", durationArg, api.MaxDuration)
			}
			ports, err := model.ParsePorts(portsArg)
			if err != nil {
				return usagef("--ports %q: want port numbers separated by commas, such as 25,465", portsArg)
			}
			if err := model.CheckProtocol(proto, ports); err != nil {
				return usagef("--protocol %q: want tcp or udp, with --ports", proto)
			}
			lasts := model.FormatDuration(duration)
			if forever {
				lasts = model.Forever
			}
			if reason == "" {
				reason = "manual"
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			nd.Type, nd.Duration, nd.Reason, nd.Simulated, nd.Ports, nd.Protocol = typ, lasts, reason, simulated, model.FormatPorts(ports), proto
			ds, err := c.AddDecisions(cmd.Context(), []api.NewDecision{nd}, true)
			if err != nil {
				return adminError(err)
			}
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = strconv.FormatInt(d.ID, 10)
			}
			return result{value: ds, raw: ids, text: func(w io.Writer) error {
				for _, d := range ds {
					until := "until " + fmtTime(d.Until)
					if d.Until.IsZero() {
						until = "no expiry"
					}
					what := esc(d.Value)
					if d.Scope == model.ScopeCountry || d.Scope == model.ScopeAS {
						what = esc(d.Scope) + " " + what
					}
					if _, err := fmt.Fprintf(w, "Decision %d: %s %s%s for %s (%s).\n", d.ID, esc(d.Type), what, portsSuffix(d), lasts, until); err != nil {
						return err
					}
				}
				return nil
			}}.render(a.stdout, format)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&ip, "ip", "i", "", "IP address to ban")
	fl.StringVarP(&cidr, "range", "r", "", "CIDR range to ban")
	fl.StringVar(&scope, "scope", "", "ban a country or an AS (with --value): country or as")
	fl.StringVar(&value, "value", "", "with --scope: a country code (CN) or an AS number (64496)")
	fl.StringVarP(&durationArg, "duration", "d", "4h", "how long the decision lasts (4h, 7d, or forever)")
	fl.StringVarP(&reason, "reason", "R", "", "why (shown in lists and to bouncers)")
	fl.StringVarP(&typ, "type", "t", "ban", "decision type, lowercase as bouncers match it exactly; only ban is enforced in the kernel, others are served to bouncers")
	fl.BoolVar(&simulated, "simulated", false, "store and show the decision without enforcing it")
	fl.StringVar(&portsArg, "ports", "", "ban only these destination ports (25,465); the address still reaches the others")
	fl.StringVar(&proto, "protocol", "", "protocol of --ports: tcp or udp (default both)")
	return cmd
}

// newDecisionTarget reads what decisions add bans: --ip, --range, or
// --scope with --value (ip and range scopes take an address or range in
// --value too).
func newDecisionTarget(ip, cidr, scope, value string) (api.NewDecision, error) {
	switch strings.ToLower(scope) {
	case "":
	case "ip":
		ip = value
	case "range":
		cidr = value
	case "country", "as":
		if ip != "" || cidr != "" {
			return api.NewDecision{}, usagef("give --scope %s with --value, not with --ip or --range", scope)
		}
		g, err := model.ParseGeo(scope, value)
		if err != nil {
			return api.NewDecision{}, usagef("--value %q: %v", value, strings.TrimPrefix(err.Error(), model.ErrBadGeo.Error()+": "))
		}
		return api.NewDecision{Scope: strings.ToLower(g.Scope), Value: g.Value}, nil
	default:
		return api.NewDecision{}, usagef("--scope %q: want ip, range, country or as", scope)
	}
	if scope == "" && value != "" {
		return api.NewDecision{}, usagef("--value needs --scope (country, as, ip or range)")
	}
	switch {
	case ip != "" && cidr != "":
		return api.NewDecision{}, usagef("give --ip or --range, not both")
	case ip != "":
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return api.NewDecision{}, usagef("--ip %q: want an IP address", ip)
		}
		return api.NewDecision{Value: addr.String()}, nil
	case cidr != "":
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return api.NewDecision{}, usagef("--range %q: want a CIDR range such as 198.51.100.0/24", cidr)
		}
		return api.NewDecision{Value: p.String()}, nil
	}
	return api.NewDecision{}, usagef("say what to ban with --ip, --range, or --scope and --value")
}
