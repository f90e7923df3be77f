package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatsec/moat/internal/metrics"
)

// startMetrics serves /metrics and the status page on metrics.listen
// (nothing when it is ""), with every component's collector.
func (d *daemon) startMetrics(dec *decisions, latency *metrics.Latency) error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	srv, err := metrics.New(metrics.Config{
		Listen:     d.cfg.Metrics.Listen,
		Logger:     d.log.With("component", "metrics"),
		Latency:    latency,
		Sources:    d.sources,
		Engine:     engineMetrics{d.engine},
		Reconciler: reconcilerMetrics{d.recon},
		NFTables:   nftView(d.recon, d.backends),
		XDP:        xdpView(d.recon, d.backends),
		Decisions:  dec.counts(),
		Status:     dec.status(),
		Geo:        d.geoResolver(),
	})
	if err != nil {
		return err
	}
	reg := srv.Registry()
	for _, c := range []prometheus.Collector{d.reloads, metrics.NewNotifyCollector(notifyMetrics{dec.notify}), metrics.NewActionCollector(actionMetrics{dec.actions})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	if err := dec.registerAllowlist(reg); err != nil {
		return err
	}
	if fm := dec.fleetMetrics; fm != nil {
		if err := reg.Register(fm); err != nil {
			return fmt.Errorf("register fleet metrics: %w", err)
		}
	}
	if cm := dec.communityMetrics; cm != nil {
		if err := reg.Register(cm); err != nil {
			return fmt.Errorf("register community metrics: %w", err)
		}
	}
	if fm := d.feeds.collector(); fm != nil {
		if err := reg.Register(fm); err != nil {
			return fmt.Errorf("register feed metrics: %w", err)
		}
	}
	d.services = append(d.services, srv.Run)
	return nil
}
