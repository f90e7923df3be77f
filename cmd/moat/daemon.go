package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// contentError marks a bad parser, scenario, acquisition or profile file:
// the admin's to fix, so exit code 2 like a bad configuration.
type contentError struct{ err error }

func (e contentError) Error() string { return e.err.Error() }
func (e contentError) Unwrap() error { return e.err }

// loadEngine builds the detection engine from the resolved content.
func loadEngine(cfg config.Config, c content, replay bool, year int) (*engine.Engine, error) {
	eng, err := engine.New(engine.Config{
		HubDir:      c.hubDir,
		HubOverlays: c.hubOverlays,
		PatternDir:  c.patternDir,
		DataDir:     cfg.Hub.Data,
		Items:       cfg.Hub.Items,
		MaxBuckets:  cfg.Hub.MaxBuckets,
		Simulated:   cfg.Simulation,
		Overrides:   scenarioOverrides(cfg),
		Replay:      replay,
		Year:        year,
		GeoIP:       c.geoIP(),
		// Replays read the proxies too: a log replayed after the fact
		// must ban the clients the live daemon would have.
		TrustedProxies: parse.TrustedProxies{Proxies: cfg.HTTP.Proxies(), Header: cfg.HTTP.ClientIPHeader},
	})
	if err != nil {
		return nil, contentError{err}
	}
	// The engine leaves out, rather than fails on, items it cannot load
	// when told to take "everything"; moat refuses to start with less
	// than what the admin installed.
	if skipped := eng.Skipped(); len(skipped) > 0 {
		return nil, contentError{skipped[0]}
	}
	return eng, nil
}

// openBackends opens the enabled kernel backends. They adopt whatever an
// earlier run left in the kernel; nothing is flushed.
func openBackends(ctx context.Context, cfg config.Config, log *slog.Logger) ([]enforce.Backend, func(), error) {
	var backends []enforce.Backend
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if cfg.Enforce.NFTables.Enabled {
		b, err := nft.Open(ctx, nftConfig(cfg))
		if err != nil {
			return nil, nil, fmt.Errorf("nftables: %w", err)
		}
		backends = append(backends, b)
		closers = append(closers, b.Close)
	}
	if x := cfg.Enforce.XDP; x.Enabled {
		b, err := xdp.Open(ctx, xdpConfig(cfg))
		switch {
		case errors.Is(err, enforce.ErrNotSupported) && len(backends) > 0:
			log.Warn("XDP is not available on this kernel; enforcing with nftables only", "err", err)
		case err != nil:
			closeAll()
			return nil, nil, fmt.Errorf("xdp: %w", err)
		default:
			for iface, mode := range b.Modes() {
				if mode != "native" {
					log.Warn("XDP attached in generic mode: the driver has no native XDP", "interface", iface, "mode", mode)
				}
			}
			backends = append(backends, b)
			closers = append(closers, b.Close)
		}
	}
	if len(backends) == 0 {
		log.Warn("no kernel backend enabled: decisions are stored and served to bouncers only")
	}
	return backends, closeAll, nil
}

func nftConfig(cfg config.Config) nft.Config {
	n := cfg.Enforce.NFTables
	return nft.Config{Hook: n.Hook, Priority: n.Priority, Interfaces: n.Interfaces, NeverBlock: cfg.Enforce.NeverBlockPorts()}
}

func xdpConfig(cfg config.Config) xdp.Config {
	x := cfg.Enforce.XDP
	return xdp.Config{PinDir: x.PinDir, Interfaces: x.Interfaces, MaxSingles: x.MaxSingles, MaxRanges: x.MaxRanges, NeverBlock: cfg.Enforce.NeverBlockPorts()}
}

// alertHandler is the alert pipeline (see decision.Dispatcher).
type alertHandler = *decision.Dispatcher

// detectLoop feeds lines through the engine, parsed by up to workers
// goroutines, and hands every line's alerts, in input order, to the
// pipeline with the line's acknowledgement, which the pipeline calls once
// they are stored. Time-driven overflows are checked every second. It is
// the only user of eng; a reload hands the next engine through swap,
// taken once the lines already read are through the old one.
func detectLoop(ctx context.Context, log *slog.Logger, eng *engine.Engine, swap <-chan *engine.Engine, lines <-chan detect.Line, workers int, pipeline alertHandler) error {
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan decision.Batch, 1024)
	g.Go(func() error { return pipeline.Run(ctx, batches) })
	// Once a batch could not be handed over (the daemon stops), no later
	// one is: the pipeline acknowledges a line's position when it and the
	// lines before it are stored, so a later batch getting through alone
	// would move the position past the lost one's lines.
	stopped := false
	send := func(b decision.Batch) {
		if stopped {
			return
		}
		select {
		case batches <- b:
		case <-ctx.Done():
			stopped = true
		}
	}
	g.Go(func() error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var degraded []string
		for {
			runCtx, stop := context.WithCancel(ctx)
			next := make(chan *engine.Engine, 1)
			go func() {
				select {
				case e := <-swap:
					next <- e
					stop()
				case <-runCtx.Done():
				}
			}()
			err := eng.RunLive(runCtx, lines, workers, tick.C,
				// Every line goes through, those that raised nothing
				// too: its acknowledgement must wait for the alerts
				// before it.
				func(l detect.Line, alerts []model.Alert) { send(decision.Batch{Alerts: alerts, Ack: l.Pos.Ack}) },
				func(_ time.Time, alerts []model.Alert) {
					if len(alerts) > 0 {
						send(decision.Batch{Alerts: alerts})
					}
					degraded = logDegraded(log, degraded, eng.Degraded())
				})
			stop()
			select {
			case eng = <-next:
				continue
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	})
	return g.Wait()
}

// parseWorkers is the configured number of parse goroutines, 0 meaning
// one per core.
func parseWorkers(cfg config.Config) int {
	if cfg.Hub.Workers > 0 {
		return cfg.Hub.Workers
	}
	return runtime.NumCPU()
}

// checkpoint saves the sources' acknowledged positions once the pipeline
// drained: the last stores acknowledge lines after Stream returned.
func checkpoint(log *slog.Logger, sources []acquire.Source) {
	for _, src := range sources {
		if c, ok := src.(acquire.Checkpointer); ok {
			if err := c.Checkpoint(); err != nil {
				log.Warn("position not saved; lines since the last save will be read again", "source", src.Name(), "err", err)
			}
		}
	}
}

// logDegraded logs the scenarios whose detection became degraded (buckets
// at their cap, new sources counted in its sketch) or recovered since the
// last call, and returns now for the next.
func logDegraded(log *slog.Logger, before, now []string) []string {
	for _, n := range now {
		if !slices.Contains(before, n) {
			log.Warn("detection degraded: scenario buckets at their cap, new sources counted in its sketch", "scenario", n)
		}
	}
	for _, n := range before {
		if !slices.Contains(now, n) {
			log.Info("detection recovered: scenario buckets below their cap", "scenario", n)
		}
	}
	return now
}

// notifyReady tells systemd the daemon is up and keeps its watchdog fed.
// Outside systemd both are no-ops.
func notifyReady(ctx context.Context, g *errgroup.Group) {
	sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	g.Go(func() error {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
				return nil
			case <-t.C:
				sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog)
			}
		}
	})
}
