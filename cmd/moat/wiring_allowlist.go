package main

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatsec/moat/enforce"
	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/metrics"
)

// resolvConf is where the system resolver's servers are read from.
const resolvConf = "/etc/resolv.conf"

// startAllowlist runs the allowlist entries that change at run time
// (hostnames, expiries, include files, runtime entries, login sessions):
// the decision service and the kernel guard refuse what they protect, and
// the bans on addresses that become protected are lifted.
func (d *decisions) startAllowlist(ctx context.Context, m *daemon, svc *decision.Service, guard *enforce.Guard, admin *http.ServeMux) error {
	cfg, log := d.cfg, d.log.With("component", "allowlist")
	var exp dynallow.ExpiryStore
	if s, ok := d.store.(dynallow.ExpiryStore); ok {
		exp = s
	}
	rt, err := dynallow.NewRuntime(ctx, svc, exp)
	if err != nil {
		return err
	}
	opt := cfg.AllowlistOptions
	utmp := ""
	if opt.ProtectSessions {
		utmp = opt.UTMP
		if _, err := os.Stat(utmp); err != nil {
			log.Warn("login sessions are not protected until the utmp file appears", "err", err)
		}
	}
	var mgr *dynallow.Manager
	mgr = dynallow.New(dynallow.Config{
		Static:     staticAllowlist(cfg),
		Files:      cfg.AllowlistFiles,
		Runtime:    rt.Entries,
		Resolver:   allowlistResolver(cfg),
		UTMP:       utmp,
		Every:      opt.FileCheck,
		AllowWide:  cfg.AllowlistAllowWide,
		Geo:        m.allowGeo(),
		GeoChanged: func(ctx context.Context) { d.allowGeoChanged(ctx, m, svc, mgr) },
		Changed: func(ctx context.Context, added, all []netip.Prefix) {
			guard.SetAllowlist(append(cfg.AllowlistPrefixes(), all...))
			lifted, err := dynallow.Lift(ctx, svc, added)
			// Country and AS bans are carved around the new entries.
			err = errors.Join(err, m.recon.Recarve(ctx))
			for _, x := range lifted {
				log.Info("ban lifted: the address is allowlisted", "value", x.Value, "scenario", x.Scenario)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("lifting bans on allowlisted addresses", "err", err)
			}
		},
		Expired: func(ctx context.Context, e dynallow.Entry) {
			if err := rt.Expire(ctx, e); err != nil {
				log.Warn("allowlist entry expired but not removed", "value", e.Value, "err", err)
				return
			}
			log.Info("allowlist entry expired", "value", e.Value, "comment", e.Comment)
		},
		Report: func(err error) { log.Warn("allowlist", "err", err) },
	})
	guard.SetExtra(mgr.GeoOverlaps)
	guardCheck := svc.Protect
	svc.Protect = func(p netip.Prefix) error {
		if err := mgr.Protect(p); err != nil {
			var pe *dynallow.ProtectedError
			if errors.As(err, &pe) && pe.Match.Source == dynallow.SourceSession {
				log.Info("ban refused: the address has a login session on this host", "value", p, "session", pe.Match.Comment)
			}
			return err
		}
		if guardCheck == nil {
			return nil
		}
		return guardCheck(p)
	}
	m.services = append(m.services, mgr.Run)
	api.AllowlistAdminRoutes(admin, api.AllowlistAdmin{Manager: mgr, Runtime: rt, Builtin: guard.Check})
	d.allowlist = mgr
	return nil
}

// staticAllowlist is the configuration file's allowlist.
func staticAllowlist(cfg config.Config) []dynallow.Entry {
	var out []dynallow.Entry
	for _, e := range cfg.AllowlistEntries() {
		out = append(out, dynallow.Entry{Value: e.Value, Comment: e.Comment, Expires: e.Expires, Source: dynallow.SourceConfig, File: e.File, Line: e.Line})
	}
	return out
}

// allowlistResolver is the configured DNS server, else the system's.
func allowlistResolver(cfg config.Config) dynallow.Resolver {
	if r := cfg.AllowlistOptions.Resolver; r != "" {
		return &dynallow.DNS{Servers: []string{r}}
	}
	return dynallow.System{ResolvConf: resolvConf}
}

// registerAllowlist exports the allowlist's metrics.
func (d *decisions) registerAllowlist(reg *prometheus.Registry) error {
	if d.allowlist == nil {
		return nil
	}
	if err := reg.Register(metrics.NewAllowlistCollector(allowlistStats{d.allowlist})); err != nil {
		return errors.Join(errors.New("register allowlist metrics"), err)
	}
	return nil
}

type allowlistStats struct{ m *dynallow.Manager }

func (a allowlistStats) AllowlistStat() metrics.AllowlistStat {
	s := a.m.Stats()
	return metrics.AllowlistStat{Entries: s.Entries, SessionRefused: s.SessionRefused, ResolveErrors: s.ResolveErrors, FileErrors: s.FileErrors}
}
