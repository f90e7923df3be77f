package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/action"
	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/fleet"
	"github.com/moatsec/moat/enforce/notify"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

// decisions holds the store, the profiles and, once the reconciler exists,
// the decision service.
type decisions struct {
	log      *slog.Logger
	cfg      config.Config
	store    daemonStore
	profiles *profile.Set
	svc      *decision.Service
	pipeline *decision.Dispatcher
	// notify delivers the alerts profiles send to notification channels.
	notify *notify.Manager
	// lis are opened by newDaemon before the kernel, served by start.
	lis *listeners
	// fleet is the fleet agent's client (nil unless fleet.server is set),
	// fleetMetrics its metrics.
	fleet        *fleet.Client
	fleetMetrics *metrics.Fleet
	// communityMetrics exports the community client's counters (nil
	// unless the client runs).
	communityMetrics *metrics.CommunityClient
	// allowlist keeps the entries that change at run time (wiring_allowlist.go).
	allowlist *dynallow.Manager
	// actions run the commands of actions: on bans and unbans (wiring_actions.go).
	actions *action.Manager
}

func (d *decisions) counts() metrics.Decisions { return decisionCounts{d} }

// loadProfiles reads the configured profiles file, or the built-in one when
// it does not exist at its default place.
func loadProfiles(cfg config.Config) (*profile.Set, error) {
	p, err := profile.Load(cfg.Profiles)
	if errors.Is(err, fs.ErrNotExist) && cfg.Profiles == config.Default().Profiles {
		p, err = profile.Parse("(built-in profiles.yaml)", packaging.DefaultProfiles)
	}
	if err != nil {
		return nil, contentError{err}
	}
	return p, nil
}

func openDecisions(ctx context.Context, cfg config.Config, log *slog.Logger) (*decisions, error) {
	profiles, err := loadProfiles(cfg)
	if err != nil {
		return nil, err
	}
	n, err := loadNotifications(cfg, profiles, log)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return &decisions{log: log.With("component", "decisions"), cfg: cfg, store: st, profiles: profiles, notify: n}, nil
}

func (d *decisions) close() {
	if err := d.store.Close(); err != nil {
		d.log.Error("close store", "err", err)
	}
}

// load hands the reconciler the stored active decisions page by page, in
// the background of its start (see enforce.Loader).
func (d *decisions) load(ctx context.Context, load func([]model.Decision) error) error {
	return d.store.ActivePages(ctx, time.Now(), 0, d.restoring(load))
}

// start builds the service and the alert pipeline over the reconciler.
func (d *decisions) start(ctx context.Context, m *daemon, guard *enforce.Guard) error {
	// A fleet server's streams wake at each store write (api.Changes),
	// and at those of other replicas the store hears of.
	var st decision.Store = d.store
	var changes *api.Changes
	if d.cfg.Server.Enabled {
		changes = api.NewChanges()
		st = changes.Wrap(d.store)
		if f, ok := d.store.(changeFeed); ok {
			m.services = append(m.services, func(ctx context.Context) error { return forwardChanges(ctx, f, changes) })
		}
	}
	svc, err := decision.New(st, d.profiles, m.recon, d.cfg.AllowlistPrefixes()...)
	if err != nil {
		return err
	}
	svc.Protect = guard.Check
	svc.GeoCheck = d.cfg.GeoIP.Need
	svc.Retention, svc.MaxAlerts = d.cfg.Store.AlertRetention, d.cfg.Store.MaxAlerts
	d.svc = svc
	if err := d.startActions(m, svc); err != nil {
		return err
	}
	fl, err := d.startFleet(m, svc)
	if err != nil {
		return err
	}
	cc, err := d.startCommunity(m, svc)
	if err != nil {
		return err
	}
	d.pipeline = decision.NewDispatcher(svc, decision.DispatcherConfig{
		OnBan: func(a model.Alert, ds []model.Decision) {
			for _, dec := range ds {
				d.log.Info("ban", "value", dec.Value, "scenario", a.Scenario, "until", dec.Until.Format(time.RFC3339), "events", a.EventsCount, "simulated", dec.Simulated)
			}
			if fl != nil {
				fl.Push(a, ds)
			}
			if cc != nil {
				cc.Share(a, ds)
			}
		},
		OnError: func(a model.Alert, err error) {
			if refusedByAllowlist(err) {
				// Working as configured: nothing is pending or retried.
				d.log.Info("ban refused: the source is protected", "scenario", a.Scenario, "source", a.Value, "reason", err)
				return
			}
			d.log.Warn("alert not fully enforced or stored; its bans stay in the kernel, the store write is retried", "scenario", a.Scenario, "source", a.Value, "err", err)
		},
		// Only queues: delivery runs in the notify service below.
		Notify: d.notify.Notify,
	})
	m.services = append(m.services, d.notify.Run)
	m.handler = d.pipeline
	m.services = append(m.services, func(ctx context.Context) error {
		<-m.recon.Ready()
		if n, err := m.recon.LoadResult(); err != nil {
			// Refused ones (an address that became ours, a new allowlist
			// entry) stay out of the kernel; the rest are enforced.
			d.log.Warn("some stored decisions are not enforced", "loaded", n, "err", err)
		}
		return nil
	})
	m.services = append(m.services, func(ctx context.Context) error {
		return svc.Run(ctx, func(err error) { d.log.Warn("store maintenance", "err", err) })
	})

	srv := api.NewServer(svc, d.store, m.status)
	srv.Changes = changes
	srv.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
	srv.OnAbort = func(r *http.Request, err error) {
		// Cut-offs are few (each held a slot for a write timeout);
		// refusals can come by thousands and are counted in status.
		level := slog.LevelDebug
		if errors.Is(err, os.ErrDeadlineExceeded) {
			level = slog.LevelWarn
		}
		d.log.Log(context.Background(), level, "api response refused or cut short", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
	// The admin socket serves the CLI; moat verify is the daemon's own
	// route beside the decision service's.
	admin := http.NewServeMux()
	admin.Handle("/", srv.AdminHandler())
	admin.HandleFunc("POST /v1/admin/verify", m.serveVerify)
	api.NotifyAdminRoutes(admin, d.notify)
	api.ReinjectRoute(admin, d)
	api.ActionAdminRoutes(admin, d.actions)
	api.SupportAdminRoutes(admin, logRingOf(d.log))
	if err := d.startAllowlist(ctx, m, svc, guard, admin); err != nil {
		return err
	}
	ln := d.lis.admin
	m.services = append(m.services, func(ctx context.Context) error { return srv.Serve(ctx, ln, admin) })
	if err := d.enableMachines(srv, m); err != nil {
		return err
	}
	if tcp := d.lis.bouncer; tcp != nil {
		h := d.apiListenHandler(srv)
		m.services = append(m.services, func(ctx context.Context) error { return srv.Serve(ctx, tcp, h) })
	}
	return nil
}

func (d *decisions) status() metrics.StatusReader { return statusReader{d.store} }

// statusReader feeds the status page from the store.
type statusReader struct{ st daemonStore }

func (s statusReader) ActiveDecisions(ctx context.Context, f metrics.DecisionFilter) ([]model.Decision, error) {
	recs, err := s.st.ListDecisions(ctx, store.Filter{IP: f.IP, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]model.Decision, len(recs))
	for i, r := range recs {
		out[i] = r.Decision
	}
	return out, nil
}

func (s statusReader) RecentAlerts(ctx context.Context, n int) ([]model.Alert, error) {
	recs, err := s.st.ListAlerts(ctx, store.AlertFilter{Limit: n})
	if err != nil {
		return nil, err
	}
	out := make([]model.Alert, len(recs))
	for i, r := range recs {
		out[i] = r.Alert
	}
	return out, nil
}

// decisionCounts reports active decisions by origin and what the pipeline
// stored since start.
type decisionCounts struct{ d *decisions }

func (c decisionCounts) DecisionCounts(ctx context.Context) (metrics.DecisionCounts, error) {
	active, err := c.d.svc.ActiveByOrigin(ctx)
	if err != nil {
		return metrics.DecisionCounts{}, err
	}
	st := c.d.pipeline.Stats()
	out := metrics.DecisionCounts{Active: active, StoreErrors: st.StoreErrors, PendingStore: st.PendingStore}
	alerts, decisions := c.d.pipeline.Created()
	for _, a := range alerts {
		out.Alerts = append(out.Alerts, metrics.CreatedStat{Scenario: a.Scenario, Origin: a.Origin, Count: a.Count})
	}
	for _, x := range decisions {
		out.Decisions = append(out.Decisions, metrics.CreatedStat{Scenario: x.Scenario, Origin: x.Origin, Count: x.Count})
	}
	return out, nil
}

// refusedByAllowlist reports whether err is a ban refused because its
// source is allowlisted, ours or has a login session, not a failure.
func refusedByAllowlist(err error) bool {
	return errors.Is(err, decision.ErrAllowlisted) || errors.Is(err, decision.ErrProtected) || errors.Is(err, dynallow.ErrProtected)
}
