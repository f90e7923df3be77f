package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/metrics"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: read logs, detect attacks, ban in the kernel",
		Long: `Runs moat in the foreground. Everything is checked before anything is
changed: a bad configuration, parser, scenario, acquisition or profile file
stops the start with exit code 2 and the kernel untouched. SIGINT and SIGTERM
stop it cleanly; bans stay in the kernel. SIGHUP (systemctl reload moat)
reloads the configuration, the acquisition and the hub content, keeping
every ban; a bad new configuration is logged and refused, and the running
one stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Caught from the start: a SIGHUP's default action kills the
			// process, and one sent while moat loads is reloaded after.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			tuneGC()
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			log, err := a.logger(cfg)
			if err != nil {
				return err
			}
			d, err := newDaemon(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer d.close()
			d.loadConfig = func() (config.Config, error) { return a.loadConfig(cmd) }
			d.setLevel = a.setLevel
			return d.run(cmd.Context(), hup)
		},
	}
}

// daemon is moat's running state, assembled by newDaemon.
type daemon struct {
	cfg     config.Config
	log     *slog.Logger
	content content
	// engine is read by status and metrics; only detectLoop runs it, and
	// a reload hands it the next one through swap.
	engine      *engineRef
	swap        chan *engine.Engine
	fingerprint string
	sources     *sourceSet
	reloads     *reloadCounts
	loadConfig  func() (config.Config, error)
	setLevel    func(config.Config) error
	recon       *enforce.Reconciler
	backends    []enforce.Backend
	closers     []func()
	services    []func(ctx context.Context) error
	handler     alertHandler
	feeds       *feedSet
	started     time.Time
	// geo is the GeoIP databases, nil without geoip: (geoip.go).
	geo *geoip.DB
}

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// newDaemon loads and checks every file first, then touches the kernel.
func newDaemon(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: log, started: time.Now(), engine: &engineRef{}, swap: make(chan *engine.Engine), reloads: newReloadCounts()}
	d.sources = &sourceSet{stateDir: filepath.Join(cfg.StateDir, "acquire"), log: log}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.content, err = resolveContent(cfg); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { d.content.cleanup() })
	if err := d.openGeo(); err != nil {
		return nil, err
	}
	if d.fingerprint, err = fingerprint(cfg, d.content); err != nil {
		return nil, err
	}
	eng, err := loadEngine(cfg, d.content, false, 0)
	if err != nil {
		return nil, err
	}
	logScenarioWarnings(log, eng)
	d.engine.p.Store(eng)
	acqs, err := loadAcquisition(d.content.acquisDir, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	for _, ac := range acqs {
		if _, err := d.sources.add(ac); err != nil {
			return nil, err
		}
	}
	dec, err := openDecisions(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, dec.close)
	if dec.lis, err = openListeners(cfg.API.Socket, cfg.API.Listen); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, dec.lis.close)
	if err := dec.lis.openServer(cfg.Server); err != nil {
		return nil, err
	}

	// The kernel, last.
	backends, closeBackends, err := openBackends(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	d.backends = backends
	d.closers = append(d.closers, closeBackends)
	latency := metrics.NewLatency()
	guard := enforce.NewGuard(enforce.GuardConfig{
		Allowlist: cfg.AllowlistPrefixes(),
		MinBits4:  cfg.Enforce.MinRangeBits4,
		MinBits6:  cfg.Enforce.MinRangeBits6,
	})
	d.recon = enforce.NewReconciler(enforce.ReconcilerConfig{
		Window:         cfg.Enforce.BatchWindow,
		MaxBatch:       cfg.Enforce.BatchMax,
		VerifyInterval: cfg.Enforce.VerifyInterval,
		IPv6Prefix:     cfg.Enforce.IPv6BanPrefix,
		Guard:          guard,
		Applied:        latency.Applied,
		Load:           dec.load,
		Verified:       logDrift(log.With("component", "reconciler")),
		Geo:            d.geoNetworks(),
	}, backends...)
	if err := dec.start(ctx, d, guard); err != nil {
		return nil, err
	}
	if err := d.startFeeds(dec.svc); err != nil {
		return nil, err
	}
	if err := d.startMetrics(dec, latency); err != nil {
		return nil, err
	}
	return d, nil
}

// positionWait bounds how long readiness waits for the sources to find
// their start; a journal on a slow disk must not hold the bans back.
const positionWait = 10 * time.Second

// waitPositioned returns once every source knows where it starts reading,
// so that a line logged after "moat running" (or "configuration reloaded")
// is never skipped by a source still seeking to the end of its input.
func (d *daemon) waitPositioned(ctx context.Context, sources []acquire.Source) {
	timeout := time.NewTimer(positionWait)
	defer timeout.Stop()
	for _, src := range sources {
		p, ok := src.(acquire.Positioner)
		if !ok {
			continue
		}
		select {
		case <-p.Positioned():
		case <-ctx.Done():
			return
		case <-timeout.C:
			d.log.Warn("a source is still looking for its start position; lines logged meanwhile may be missed", "source", src.Name())
			return
		}
	}
}

// loadAcquisition reads acquis.d. An empty acquis.d is not an error (the
// daemon still serves decisions), but it reads no logs, so it says so; no
// source is made up in its place.
func loadAcquisition(dir string, log *slog.Logger) ([]acquire.Config, error) {
	acqs, err := acquire.LoadConfigDir(dir)
	if err != nil {
		return nil, contentError{err}
	}
	if len(acqs) == 0 {
		log.Warn("no acquisition configured: moat reads no logs", "dir", dir)
	}
	return acqs, nil
}

func (d *daemon) run(ctx context.Context, hup <-chan os.Signal) error {
	g, ctx := errgroup.WithContext(ctx)
	// Unbuffered: a source saves its position only for lines it handed
	// over, so a line waiting in a buffer would be lost by a crash.
	lines := make(chan detect.Line)
	g.Go(func() error { return d.recon.Run(ctx) })
	g.Go(func() error { return d.sources.run(ctx, lines) })
	g.Go(func() error {
		return detectLoop(ctx, d.log, d.engine.p.Load(), d.swap, lines, parseWorkers(d.cfg), d.handler)
	})
	for _, svc := range d.services {
		g.Go(func() error { return svc(ctx) })
	}
	select {
	case <-d.recon.Ready():
	case <-ctx.Done():
		return g.Wait()
	}
	d.waitPositioned(ctx, d.sources.list())
	notifyReady(ctx, g)
	d.log.Info("moat running", "sources", len(d.sources.list()), "backends", backendNames(d.backends), "entries", d.recon.Stats().Entries)
	g.Go(func() error { return d.reloadLoop(ctx, hup) })
	g.Go(func() error { trimIdle(ctx, d.engine); return nil })
	err := g.Wait()
	checkpoint(d.log, d.sources.list())
	d.log.Info("moat stopped; bans stay in the kernel")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func backendNames(bs []enforce.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name())
	}
	return out
}
