package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// Config builds a Server. Every component is optional: a nil one simply
// exports nothing (XDP disabled, no decision service in a replay).
type Config struct {
	// Listen is metrics.listen, e.g. 127.0.0.1:9641.
	Listen string
	// WebConfigFile is an optional Prometheus exporter-toolkit web config
	// (basic auth users, TLS); "" serves plain HTTP without auth.
	WebConfigFile string
	Logger        *slog.Logger
	// ScrapeTimeout bounds the reads of one scrape (default 5s).
	ScrapeTimeout time.Duration
	// DropsInterval is how often drops are sampled for the status page's
	// drops-per-second figure (default 5s).
	DropsInterval time.Duration
	// ElementsInterval is how long a count of the kernel's elements serves
	// scrapes before the next one is taken (default 30s; longer when a
	// count takes over a tenth of it).
	ElementsInterval time.Duration
	// TrendInterval is how often the decision service's counters are
	// sampled for the status page's charts (default 15s).
	TrendInterval time.Duration
	// Geo, when set, groups the status page's attackers by country and AS.
	Geo GeoResolver

	// Latency is the histogram whose Applied method was given to the
	// reconciler; nil makes a new one.
	Latency    *Latency
	Sources    Sources
	Engine     Engine
	Reconciler Reconciler
	NFTables   NFTables
	XDP        XDP
	Decisions  Decisions
	Status     StatusReader
}

// Server owns moat's metrics registry and serves /metrics and the status
// page.
type Server struct {
	cfg     Config
	reg     *prometheus.Registry
	latency *Latency
	handler http.Handler
	drops   dropSampler
	trend   *trend
}

// New builds the registry and handlers. It checks the web config file, so a
// typo fails at start rather than at the first scrape.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 5 * time.Second
	}
	if cfg.DropsInterval <= 0 {
		cfg.DropsInterval = 5 * time.Second
	}
	if cfg.ElementsInterval <= 0 {
		cfg.ElementsInterval = 30 * time.Second
	}
	if cfg.TrendInterval <= 0 {
		cfg.TrendInterval = 15 * time.Second
	}
	if cfg.WebConfigFile != "" {
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			return nil, fmt.Errorf("metrics web config %s: %w", cfg.WebConfigFile, err)
		}
	}
	s := &Server{cfg: cfg, reg: prometheus.NewRegistry(), latency: cfg.Latency, trend: newTrend()}
	if s.latency == nil {
		s.latency = NewLatency()
	}

	ups := map[string]updater{}
	if cfg.Sources != nil {
		ups["sources"] = newSourcesUpdater(cfg.Sources)
	}
	if cfg.Engine != nil {
		ups["engine"] = newEngineUpdater(cfg.Engine)
	}
	if cfg.Reconciler != nil {
		ups["reconciler"] = newReconcilerUpdater(cfg.Reconciler)
	}
	k := newKernelDescs()
	if cfg.NFTables != nil {
		ups["nftables"] = newNFTUpdater(cfg.NFTables, k, cfg.ElementsInterval)
	}
	if cfg.XDP != nil {
		ups["xdp"] = newXDPUpdater(cfg.XDP, k, cfg.ElementsInterval)
	}
	if cfg.Decisions != nil {
		ups["decisions"] = newDecisionsUpdater(cfg.Decisions)
	}
	for _, c := range []prometheus.Collector{
		newScrapeCollector(ups, cfg.ScrapeTimeout),
		s.latency.h,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}

	tmpl, err := parseStatusTemplate()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       cfg.ScrapeTimeout + time.Second,
	}))
	mux.Handle("GET /{$}", &statusPage{s: s, tmpl: tmpl, now: time.Now, loc: time.Local})
	s.handler = mux
	return s, nil
}

// Latency is the histogram fed by the reconciler's Applied hook.
func (s *Server) Latency() *Latency { return s.latency }

// Registry is the server's registry, for tests and for `moat run` to add
// collectors of its own.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler serves /metrics and the status page at /, without the web
// config's auth and TLS (those wrap it in Serve).
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on cfg.Listen and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l, with basic auth and TLS from the web config, until ctx
// ends; it then shuts down gracefully and returns nil.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.drops.run(ctx, s.cfg.DropsInterval, s.readDrops)
	}()
	if s.cfg.Decisions != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.trend.run(ctx, s.cfg.TrendInterval, s.cfg.Decisions)
		}()
	}
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	webCfg := s.cfg.WebConfigFile
	err := web.Serve(l, srv, &web.FlagConfig{WebConfigFile: &webCfg}, s.cfg.Logger)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("metrics serve: %w", err)
}

// readDrops sums the packets every backend dropped, for the status page's
// rate. Errors count as "no sample".
func (s *Server) readDrops(ctx context.Context) (float64, bool) {
	var t float64
	any := false
	if s.cfg.XDP != nil {
		if c, err := s.cfg.XDP.XDPCounters(); err == nil {
			t += float64(c.DroppedPackets)
			any = true
		}
	}
	if s.cfg.NFTables != nil {
		if cs, err := s.cfg.NFTables.DropCounters(ctx); err == nil {
			for _, c := range cs {
				t += float64(c.Packets)
			}
			any = true
		}
	}
	return t, any
}

// dropSampler keeps the last two samples of the drop total, so the status
// page can show a rate without a time-series store.
type dropSampler struct {
	mu         sync.Mutex
	prev, last dropSample
}

type dropSample struct {
	at    time.Time
	total float64
}

func (d *dropSampler) run(ctx context.Context, every time.Duration, read func(context.Context) (float64, bool)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if v, ok := read(ctx); ok {
			d.add(dropSample{time.Now(), v})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *dropSampler) add(s dropSample) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prev, d.last = d.last, s
}

// rate returns packets per second over the last interval; ok is false
// until two samples exist or after a counter reset.
func (d *dropSampler) rate() (float64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prev.at.IsZero() || d.last.total < d.prev.total {
		return 0, false
	}
	dt := d.last.at.Sub(d.prev.at).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return (d.last.total - d.prev.total) / dt, true
}
