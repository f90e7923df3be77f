package main

import (
	"context"
	"io"
	"slices"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/enforce/action"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/version"
)

// checkContent loads everything moat run would load, touching nothing.
func checkContent(cfg config.Config, warn io.Writer) error {
	c, err := openContent(cfg)
	if err != nil {
		return err
	}
	defer c.cleanup()
	eng, err := loadEngine(cfg, c, false, 0)
	if err != nil {
		return err
	}
	printScenarioWarnings(warn, eng)
	acqs, err := acquire.LoadConfigDir(c.acquisDir)
	if err != nil {
		return contentError{err}
	}
	for _, ac := range acqs {
		if err := ac.Validate(); err != nil {
			return contentError{err}
		}
	}
	profiles, err := loadProfiles(cfg)
	if err != nil {
		return err
	}
	if _, err = loadNotifications(cfg, profiles, nil); err != nil {
		return err
	}
	_, err = action.FromConfig(&cfg)
	return err
}

// status fills the daemon's part of moat status.
func (d *daemon) status(ctx context.Context) (api.Status, error) {
	st := api.Status{Version: version.Version, StartedAt: d.started, Counters: map[string]int64{}}
	for _, s := range d.sources.list() {
		ss := s.Stats()
		src := api.Source{Name: s.Name(), Lines: int64(ss.Lines)}
		if ss.LastError != nil {
			src.Error = ss.LastError.Error()
		}
		st.Sources = append(st.Sources, src)
	}
	es := d.engine.Stats()
	st.Counters["config_reloads"] = int64(d.reloads.success.Load())
	st.Counters["config_reloads_failed"] = int64(d.reloads.failure.Load())
	for _, p := range es.Parsers {
		st.Parsers = append(st.Parsers, p.Parser)
	}
	st.Parsers = slices.Compact(st.Parsers)
	for _, sc := range es.Scenarios.Scenarios {
		st.Scenarios = append(st.Scenarios, sc.Name)
	}
	rs := d.recon.Stats()
	for _, b := range d.backends {
		st.Backends = append(st.Backends, api.Backend{Name: b.Name(), Entries: int(rs.Entries)})
	}
	st.Counters["lines"] = int64(es.Lines)
	st.Counters["parsed"] = int64(es.Parsed)
	st.Counters["unparsed"] = int64(es.Unparsed)
	// Trusted-proxy rewrites of HTTP sources, and trusted proxies'
	// headers that named no client (http.trusted_proxies).
	st.Counters["http_proxy_rewritten"] = int64(es.Proxies.Rewritten)
	st.Counters["http_proxy_refused"] = int64(es.Proxies.Refused)
	st.Counters["alert_context_errors"] = int64(es.ContextErrors)
	st.Counters["kernel_batches"] = int64(rs.Batches)
	st.Counters["kernel_errors"] = int64(rs.ApplyErrors)
	st.Counters["refused"] = int64(rs.Refused)
	st.Counters["drift_repaired"] = int64(rs.Drift)
	st.Counters["scenarios_simulated"] = simulatedScenarios(d.engine.p.Load())
	d.feeds.addStatus(&st)
	st.GeoIP = d.geoStatus()
	return st, nil
}
