package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
	"github.com/moatsec/moat/internal/config"
)

// contentError marks a bad parser, scenario, acquisition or profile file:
// the admin's to fix, so exit code 2 like a bad configuration.
type contentError struct{ err error }

func (e contentError) Error() string { return e.err.Error() }
func (e contentError) Unwrap() error { return e.err }

// loadEngine builds the detection engine from the resolved content.
func loadEngine(cfg config.Config, c content, replay bool, year int) (*engine.Engine, error) {
	eng, err := engine.New(engine.Config{
		HubDir:     c.hubDir,
		PatternDir: c.patternDir,
		DataDir:    cfg.Hub.Data,
		Items:      cfg.Hub.Items,
		MaxBuckets: cfg.Hub.MaxBuckets,
		Simulated:  cfg.Simulation,
		Replay:     replay,
		Year:       year,
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
	return nft.Config{Hook: n.Hook, Priority: n.Priority, Interfaces: n.Interfaces}
}

func xdpConfig(cfg config.Config) xdp.Config {
	x := cfg.Enforce.XDP
	return xdp.Config{PinDir: x.PinDir, Interfaces: x.Interfaces, MaxSingles: x.MaxSingles, MaxRanges: x.MaxRanges}
}

// alertHandler is the alert pipeline (see decision.Dispatcher).
type alertHandler = *decision.Dispatcher

// detectLoop feeds lines through the engine and hands every line's alerts
// to the pipeline with the line's acknowledgement, which the pipeline
// calls once they are stored. Time-driven overflows are checked every
// second. It is the only user of eng; a reload hands the next engine
// through swap, taken between two lines.
func detectLoop(ctx context.Context, log *slog.Logger, eng *engine.Engine, swap <-chan *engine.Engine, lines <-chan detect.Line, pipeline alertHandler) error {
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan decision.Batch, 1024)
	g.Go(func() error { return pipeline.Run(ctx, batches) })
	send := func(b decision.Batch) bool {
		select {
		case batches <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	g.Go(func() error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var degraded []string
		for {
			select {
			case <-ctx.Done():
				return nil
			case eng = <-swap:
			case l := <-lines:
				// Every line goes through, those that raised nothing too:
				// its acknowledgement must wait for the alerts before it.
				if !send(decision.Batch{Alerts: eng.Process(l), Ack: l.Pos.Ack}) {
					return nil
				}
			case now := <-tick.C:
				if alerts := eng.Tick(now); len(alerts) > 0 && !send(decision.Batch{Alerts: alerts}) {
					return nil
				}
				degraded = logDegraded(log, degraded, eng.Degraded())
			}
		}
	})
	return g.Wait()
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
