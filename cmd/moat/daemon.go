package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/enforce"
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

// alertHandler turns an alert into decisions (profiles, allowlist, store)
// and hands them to the reconciler; it returns once the kernel holds them,
// and stored once they are stored too (see decision.Service.Enforce).
type alertHandler interface {
	Enforce(ctx context.Context, a model.Alert) (ds []model.Decision, stored func() error, err error)
}

// alertShards is how many alerts are turned into decisions at once. An
// alert waits for SQLite (profiles count earlier bans), so lines keep
// flowing through the engine while alerts are handled beside it; alerts of
// one source always go to the same shard, in order, so escalation counts
// each earlier ban.
const alertShards = 4

// maxStoring bounds, per shard, the alerts whose bans are in the kernel but
// not yet in the store. A shard does not wait for a store write before the
// next alert's ban (a write can take milliseconds, and bans queued behind
// it), only for one of the same source, or when this many are pending.
const maxStoring = 64

// detectLoop feeds lines through the engine and hands every alert to h.
// Time-driven overflows are checked every second. It is the only user of
// eng.
func detectLoop(ctx context.Context, log *slog.Logger, eng *engine.Engine, lines <-chan detect.Line, h alertHandler) error {
	g, ctx := errgroup.WithContext(ctx)
	var shards [alertShards]chan model.Alert
	for i := range shards {
		shards[i] = make(chan model.Alert, 1024)
		g.Go(func() error {
			var storing []storingAlert // oldest first
			defer func() {
				// Stores outlive the context: the kernel already has the bans.
				for _, p := range storing {
					<-p.done
				}
			}()
			for {
				select {
				case <-ctx.Done():
					return nil
				case a := <-shards[i]:
					storing = settle(storing, a.Value)
					if p, ok := handleAlert(ctx, log, h, a); ok {
						storing = append(storing, p)
					}
				}
			}
		})
	}
	dispatch := func(alerts []model.Alert) {
		for _, a := range alerts {
			select {
			case shards[shardOf(a.Value)] <- a:
			case <-ctx.Done():
				return
			}
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
			case l := <-lines:
				dispatch(eng.Process(l))
			case now := <-tick.C:
				dispatch(eng.Tick(now))
				degraded = logDegraded(log, degraded, eng.Degraded())
			}
		}
	})
	return g.Wait()
}

// logDegraded logs the scenarios whose detection became degraded (buckets
// at their cap, new sources counted approximately) or recovered since the
// last call, and returns now for the next.
func logDegraded(log *slog.Logger, before, now []string) []string {
	for _, n := range now {
		if !slices.Contains(before, n) {
			log.Warn("detection degraded: scenario buckets at their cap, new sources counted approximately", "scenario", n)
		}
	}
	for _, n := range before {
		if !slices.Contains(now, n) {
			log.Info("detection recovered: scenario buckets below their cap", "scenario", n)
		}
	}
	return now
}

func shardOf(value string) int {
	h := fnv.New32a()
	h.Write([]byte(value))
	return int(h.Sum32() % alertShards)
}

// storingAlert is an alert whose bans are enforced and whose store write
// is still running; done closes when it ends.
type storingAlert struct {
	value string
	done  chan struct{}
}

// settle drops the finished store writes, waits for the one of value if
// any, and for the oldest while too many are pending.
func settle(storing []storingAlert, value string) []storingAlert {
	kept := storing[:0]
	for _, p := range storing {
		select {
		case <-p.done:
			continue
		default:
		}
		if p.value == value {
			<-p.done
			continue
		}
		kept = append(kept, p)
	}
	clear(storing[len(kept):])
	for len(kept) >= maxStoring {
		<-kept[0].done
		kept = kept[1:]
	}
	return kept
}

// handleAlert enforces a's bans and logs them; the store write goes on in
// the background, reported through the returned done.
func handleAlert(ctx context.Context, log *slog.Logger, h alertHandler, a model.Alert) (storingAlert, bool) {
	ds, stored, err := h.Enforce(ctx, a)
	if err != nil {
		log.Warn("alert not enforced", "scenario", a.Scenario, "source", a.Value, "err", err)
		return storingAlert{}, false
	}
	for _, d := range ds {
		log.Info("ban", "value", d.Value, "scenario", a.Scenario, "until", d.Until.Format(time.RFC3339), "events", a.EventsCount, "simulated", d.Simulated)
	}
	p := storingAlert{value: a.Value, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if err := stored(); err != nil {
			log.Warn("alert not fully enforced or stored", "scenario", a.Scenario, "source", a.Value, "err", err)
		}
	}()
	return p, true
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
