package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/version"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: read logs, detect attacks, ban in the kernel",
		Long: `Runs moat in the foreground. Everything is checked before anything is
changed: a bad configuration, parser, scenario, acquisition or profile file
stops the start with exit code 2 and the kernel untouched. SIGINT and SIGTERM
stop it cleanly; bans stay in the kernel.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			return d.run(cmd.Context())
		},
	}
}

// daemon is moat's running state, assembled by newDaemon.
type daemon struct {
	cfg      config.Config
	log      *slog.Logger
	content  content
	engine   *engine.Engine
	sources  []acquire.Source
	recon    *enforce.Reconciler
	backends []enforce.Backend
	closers  []func()
	services []func(ctx context.Context) error
	handler  alertHandler
	started  time.Time
}

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// newDaemon loads and checks every file first, then touches the kernel.
// daemonGOGC is the daemon's GC target unless GOGC says otherwise. With
// Go's default of 100, a small heap is collected every few megabytes, and
// on a 2-CPU host each cycle takes a CPU from the detection path for
// milliseconds: over 200 attackers through journald, the detection-to-kernel
// p99 was 2.3-15 ms (median 6.9) in five runs at 100, 2.8-5.8 ms (median
// 3.3) at 200. The price is a heap that may grow to three times what is
// live instead of twice.
const daemonGOGC = 200

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGOGC)
	}
}

func newDaemon(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, log: log, started: time.Now()}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.content, err = resolveContent(cfg); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, d.content.cleanup)
	if d.engine, err = loadEngine(cfg, d.content, false, 0); err != nil {
		return nil, err
	}
	acqs, err := loadAcquisition(d.content.acquisDir, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	for _, ac := range acqs {
		src, err := acquire.New(ac, filepath.Join(cfg.StateDir, "acquire"), acquire.WithAcks())
		if err != nil {
			return nil, contentError{err}
		}
		d.sources = append(d.sources, src)
	}
	dec, err := openDecisions(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, dec.close)

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
	}, backends...)
	if err := dec.start(ctx, d, guard); err != nil {
		return nil, err
	}
	if cfg.Metrics.Listen != "" {
		srv, err := metrics.New(metrics.Config{
			Listen:     cfg.Metrics.Listen,
			Logger:     log.With("component", "metrics"),
			Latency:    latency,
			Sources:    sourceStats(d.sources),
			Engine:     d.engine,
			Reconciler: d.recon,
			NFTables:   nftView(d.recon, backends),
			XDP:        xdpView(d.recon, backends),
			Decisions:  dec.counts(),
			Status:     dec.status(),
		})
		if err != nil {
			return nil, err
		}
		d.services = append(d.services, srv.Run)
	}
	return d, nil
}

// positionWait bounds how long readiness waits for the sources to find
// their start; a journal on a slow disk must not hold the bans back.
const positionWait = 10 * time.Second

// waitPositioned returns once every source knows where it starts reading,
// so that a line logged after "moat running" is never skipped by a source
// still seeking to the end of its input.
func (d *daemon) waitPositioned(ctx context.Context) {
	timeout := time.NewTimer(positionWait)
	defer timeout.Stop()
	for _, src := range d.sources {
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

// loadAcquisition reads acquis.d. Without a journal (containers, minimal
// systems) the default journald source is replaced by /var/log/auth.log.
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

func (d *daemon) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	// Unbuffered: a source saves its position only for lines it handed
	// over, so a line waiting in a buffer would be lost by a crash.
	lines := make(chan detect.Line)
	g.Go(func() error { return d.recon.Run(ctx) })
	for _, src := range d.sources {
		g.Go(func() error {
			// One source failing never stops the others, nor detection.
			if err := src.Stream(ctx, lines); err != nil && ctx.Err() == nil {
				d.log.Error("source stopped", "source", src.Name(), "err", err)
			}
			return nil
		})
	}
	g.Go(func() error { return detectLoop(ctx, d.log, d.engine, lines, d.handler) })
	for _, svc := range d.services {
		g.Go(func() error { return svc(ctx) })
	}
	select {
	case <-d.recon.Ready():
	case <-ctx.Done():
		return g.Wait()
	}
	d.waitPositioned(ctx)
	notifyReady(ctx, g)
	d.log.Info("moat running", "sources", len(d.sources), "backends", backendNames(d.backends), "entries", d.recon.Stats().Entries)
	err := g.Wait()
	checkpoint(d.log, d.sources)
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

// sourceStats adapts the acquisition sources for the metrics server.
type sourceStats []acquire.Source

func (ss sourceStats) SourceStats() []metrics.SourceStat {
	out := make([]metrics.SourceStat, 0, len(ss))
	for _, s := range ss {
		st := s.Stats()
		ms := metrics.SourceStat{Name: s.Name(), Lines: st.Lines, Bytes: st.Bytes, Errors: st.Errors, CutLines: st.Cut, Lag: st.Lag, Up: st.LastError == nil}
		if st.LastError != nil {
			ms.Err = st.LastError.Error()
		}
		out = append(out, ms)
	}
	return out
}

// checkContent loads everything moat run would load, touching nothing.
func checkContent(cfg config.Config) error {
	c, err := resolveContent(cfg)
	if err != nil {
		return err
	}
	defer c.cleanup()
	if _, err := loadEngine(cfg, c, false, 0); err != nil {
		return err
	}
	acqs, err := acquire.LoadConfigDir(c.acquisDir)
	if err != nil {
		return contentError{err}
	}
	for _, ac := range acqs {
		if err := ac.Validate(); err != nil {
			return contentError{err}
		}
	}
	_, err = loadProfiles(cfg)
	return err
}

// status fills the daemon's part of moat status.
func (d *daemon) status(ctx context.Context) (api.Status, error) {
	st := api.Status{Version: version.Version, StartedAt: d.started, Counters: map[string]int64{}}
	for _, s := range d.sources {
		ss := s.Stats()
		src := api.Source{Name: s.Name(), Lines: int64(ss.Lines)}
		if ss.LastError != nil {
			src.Error = ss.LastError.Error()
		}
		st.Sources = append(st.Sources, src)
	}
	es := d.engine.Stats()
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
	st.Counters["kernel_batches"] = int64(rs.Batches)
	st.Counters["kernel_errors"] = int64(rs.ApplyErrors)
	st.Counters["refused"] = int64(rs.Refused)
	st.Counters["drift_repaired"] = int64(rs.Drift)
	return st, nil
}
