package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
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
	store    *store.Store
	profiles *profile.Set
	svc      *decision.Service
	created  created
}

func (d *decisions) counts() metrics.Decisions {
	return &decisionCounts{svc: d.svc, created: &d.created}
}

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
	st, err := store.Open(ctx, filepath.Join(cfg.StateDir, store.FileName), store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &decisions{log: log.With("component", "decisions"), cfg: cfg, store: st, profiles: profiles}, nil
}

func (d *decisions) close() {
	if err := d.store.Close(); err != nil {
		d.log.Error("close store", "err", err)
	}
}

// start builds the service over the reconciler and seeds the reconciler
// with the stored active decisions, so a restart converges to them.
func (d *decisions) start(ctx context.Context, m *daemon, guard *enforce.Guard) error {
	svc, err := decision.New(d.store, d.profiles, m.recon, d.cfg.AllowlistPrefixes()...)
	if err != nil {
		return err
	}
	svc.Protect = guard.Check
	d.svc = svc
	active, err := svc.ActiveDecisions(ctx)
	if err != nil {
		return fmt.Errorf("read active decisions: %w", err)
	}
	if err := m.recon.Seed(active); err != nil {
		// Refused ones (an address that became ours, a new allowlist
		// entry) stay out of the kernel; the rest are enforced.
		d.log.Warn("some stored decisions are not enforced", "err", err)
	}
	m.handler = countingHandler{svc: svc, created: &d.created}
	m.services = append(m.services, func(ctx context.Context) error {
		return svc.Run(ctx, func(err error) { d.log.Warn("store maintenance", "err", err) })
	})

	srv := api.NewServer(svc, m.status)
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
	ln, err := api.ListenUnix(d.cfg.API.Socket)
	if err != nil {
		return err
	}
	m.closers = append(m.closers, func() { ln.Close(); os.Remove(d.cfg.API.Socket) })
	m.services = append(m.services, func(ctx context.Context) error { return srv.Serve(ctx, ln, admin) })
	if d.cfg.API.Listen != "" {
		tcp, err := net.Listen("tcp", d.cfg.API.Listen)
		if err != nil {
			return fmt.Errorf("bouncer api: %w", err)
		}
		m.closers = append(m.closers, func() { tcp.Close() })
		m.services = append(m.services, func(ctx context.Context) error { return srv.Serve(ctx, tcp, srv.BouncerHandler()) })
	}
	return nil
}

// countingHandler counts what alerts become, for the metrics.
type countingHandler struct {
	svc     *decision.Service
	created *created
}

func (h countingHandler) Enforce(ctx context.Context, a model.Alert) ([]model.Decision, func() error, error) {
	ds, stored, err := h.svc.Enforce(ctx, a)
	h.created.add(a, ds)
	return ds, stored, err
}

func (d *decisions) status() metrics.StatusReader { return statusReader{d.store} }

// statusReader feeds the status page from the store.
type statusReader struct{ st *store.Store }

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

// created counts alerts and decisions since start by scenario and origin,
// for moat_alerts_total and moat_decisions_total.
type created struct {
	mu        sync.Mutex
	alerts    map[metrics.CreatedStat]uint64
	decisions map[metrics.CreatedStat]uint64
}

func (c *created) add(a model.Alert, ds []model.Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.alerts == nil {
		c.alerts, c.decisions = map[metrics.CreatedStat]uint64{}, map[metrics.CreatedStat]uint64{}
	}
	c.alerts[metrics.CreatedStat{Scenario: a.Scenario, Origin: model.OriginLocal}]++
	for _, d := range ds {
		c.decisions[metrics.CreatedStat{Scenario: d.Scenario, Origin: d.Origin}]++
	}
}

func (c *created) snapshot() (alerts, decisions []metrics.CreatedStat) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.alerts {
		k.Count = n
		alerts = append(alerts, k)
	}
	for k, n := range c.decisions {
		k.Count = n
		decisions = append(decisions, k)
	}
	return alerts, decisions
}

// decisionCounts reports active decisions by origin (from the store, at
// most every few seconds: a scrape must not scan a million rows each time)
// and what was created since start.
type decisionCounts struct {
	svc     *decision.Service
	created *created

	mu     sync.Mutex
	at     time.Time
	active map[model.Origin]int
}

func (c *decisionCounts) DecisionCounts(ctx context.Context) (metrics.DecisionCounts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > 15*time.Second {
		ds, err := c.svc.ActiveDecisions(ctx)
		if err != nil {
			return metrics.DecisionCounts{}, err
		}
		c.active = map[model.Origin]int{}
		for _, d := range ds {
			c.active[d.Origin]++
		}
		c.at = time.Now()
	}
	out := metrics.DecisionCounts{Active: maps.Clone(c.active)}
	out.Alerts, out.Decisions = c.created.snapshot()
	return out, nil
}
