package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/community/server"
	"github.com/moatsec/moat/internal/metrics"
)

func (a *app) communityCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "community",
		Short: "Exchange signals and a consensus blocklist with a community server (opt-in)",
		Long: `The community exchange is off until an operator registers this host with
moat community register and turns community.enabled, share and pull on in
moat.yaml. moat community serve runs the consensus server (docs/community.md).`,
	}
	c.AddCommand(a.communityServeCmd(), a.communityExplainCmd(), a.communityRegisterCmd(), a.communityStatusCmd(), a.communityUnregisterCmd())
	return c
}

// serverFlags are the flags serve and explain share.
type serverFlags struct {
	db, dsn, tokenFile string
	canaries           []string
	cfg                server.Config
}

func (f *serverFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.db, "db", "", "SQLite database file (default <state_dir>/community-server.db)")
	fl.StringVar(&f.dsn, "dsn", "", "PostgreSQL URL (postgres://...) instead of SQLite")
	fl.IntVar(&f.cfg.K, "k", 3, "distinct reporters an address needs")
	fl.IntVar(&f.cfg.MinNetworks, "min-networks", 2, "distinct reporter networks (/16, IPv6 /32) an address needs")
	fl.DurationVar(&f.cfg.Window, "window", 24*time.Hour, "how far back reports count")
	fl.DurationVar(&f.cfg.TTL, "ttl", 24*time.Hour, "how long an address stays listed after its last report")
	fl.StringSliceVar(&f.canaries, "canary", nil, "canary address or CIDR: reporting it collapses a reporter's trust (repeatable)")
}

// open opens the server the flags describe, its allowlist the config's.
func (a *app) openServer(cmd *cobra.Command, f *serverFlags) (*server.Server, error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	f.cfg.DSN = f.dsn
	if f.cfg.DSN == "" {
		f.cfg.DSN = f.db
	}
	if f.cfg.DSN == "" {
		f.cfg.DSN = filepath.Join(cfg.StateDir, "community-server.db")
	}
	f.cfg.Allowlist = cfg.AllowlistPrefixes()
	for _, s := range f.canaries {
		p, err := prefixOf(s)
		if err != nil {
			return nil, usagef("--canary %q: %v", s, err)
		}
		f.cfg.Canaries = append(f.cfg.Canaries, p)
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, usagef("--enrolment-token-file: %v", err)
		}
		f.cfg.EnrolmentToken = strings.TrimSpace(string(b))
	}
	srv, err := server.Open(cmd.Context(), f.cfg)
	if err != nil {
		return nil, fmt.Errorf("community server: %w", err)
	}
	return srv, nil
}

func prefixOf(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (a *app) communityServeCmd() *cobra.Command {
	f := &serverFlags{}
	var listen, cert, key, metricsListen string
	var every time.Duration
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the community consensus server (CrowdSec CAPI-compatible)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return usagef("--listen %q: want address:port", listen)
			}
			if (cert == "") != (key == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			if !ap.Addr().IsLoopback() && cert == "" {
				return usagef("--listen %s is not loopback: set --tls-cert and --tls-key, or serve on loopback behind a TLS proxy (--trust-forwarded-for)", listen)
			}
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			log, err := a.logger(cfg)
			if err != nil {
				return err
			}
			log = log.With("component", "community-server")
			f.cfg.OnError = func(err error) { log.Warn("community server", "err", err) }
			srv, err := a.openServer(cmd, f)
			if err != nil {
				return err
			}
			defer srv.Close()
			if metricsListen != "" {
				stop, err := serveCommunityMetrics(srv, metricsListen, log)
				if err != nil {
					return err
				}
				defer stop()
			}
			return serveCommunity(cmd.Context(), srv, listen, cert, key, every, log)
		},
	}
	f.add(c)
	fl := c.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:8090", "address:port to serve on")
	fl.StringVar(&cert, "tls-cert", "", "TLS certificate file")
	fl.StringVar(&key, "tls-key", "", "TLS key file")
	fl.StringVar(&f.tokenFile, "enrolment-token-file", "", "file holding the enrolment token reporters present (cscli console enroll TOKEN, moat community register --token)")
	fl.BoolVar(&f.cfg.Open, "open", false, "admit every registered reporter without an enrolment token")
	fl.BoolVar(&f.cfg.TrustForwardedFor, "trust-forwarded-for", false, "take reporters' addresses from X-Forwarded-For (only behind a proxy that sets it)")
	fl.IntVar(&f.cfg.MaxList, "max-list", 10000, "addresses one pull returns at most")
	fl.DurationVar(&every, "evaluate-interval", 10*time.Second, "how often the consensus is evaluated")
	fl.StringVar(&metricsListen, "metrics-listen", "", "address:port serving /metrics (Prometheus); empty: none")
	return c
}

// serveCommunityMetrics serves the server's metrics on their own
// listener, apart from the API: a scraper never needs a reporter's
// credentials, and the API listener may face the internet while this one
// stays on loopback. stop closes it.
func serveCommunityMetrics(srv *server.Server, listen string, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewCommunityServer(communityServerMetrics{srv})); err != nil {
		return nil, fmt.Errorf("community server metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("community server metrics: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("community server metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("community server metrics listener stopped", "err", err)
		}
	}()
	log.Info("community server metrics listening", "addr", ln.Addr().String())
	return func() { _ = hs.Close() }, nil
}

// serveCommunity serves srv until ctx ends, evaluating every interval.
func serveCommunity(ctx context.Context, srv *server.Server, listen, cert, key string, every time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("community server: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	served := make(chan error, 1)
	go func() {
		if cert != "" {
			served <- hs.ServeTLS(ln, cert, key)
		} else {
			served <- hs.Serve(ln)
		}
	}()
	evalCtx, stopEval := context.WithCancel(ctx)
	evaluated := make(chan error, 1)
	go func() { evaluated <- srv.Run(evalCtx, every) }()
	defer func() {
		stopEval()
		<-evaluated
	}()
	log.Info("community server listening", "addr", ln.Addr().String(), "tls", cert != "")
	select {
	case err := <-served:
		return fmt.Errorf("community server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

func (a *app) communityExplainCmd() *cobra.Command {
	f := &serverFlags{}
	c := &cobra.Command{
		Use:   "explain IP",
		Short: "On the community server: why an address is (not) listed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ip, err := netip.ParseAddr(args[0])
			if err != nil {
				return usagef("%q: not an IP address", args[0])
			}
			// explain serves nothing, so admission does not apply; Open
			// only spares it an enrolment token it would never check.
			f.cfg.Open = true
			srv, err := a.openServer(cmd, f)
			if err != nil {
				return err
			}
			defer srv.Close()
			e, err := srv.Explain(cmd.Context(), ip)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			}
			fmt.Fprintf(a.stdout, "%s: listed %v\n", e.Addr, e.Listed)
			fmt.Fprintf(a.stdout, "reports %d, reporters %d (trusted %d), networks %d, score %.2f\n", e.Reports, e.Reporters, e.TrustedReporters, e.Networks, e.Score)
			if !e.FirstSeen.IsZero() {
				fmt.Fprintf(a.stdout, "first seen %s, last seen %s\n", e.FirstSeen.UTC().Format(time.RFC3339), e.LastSeen.UTC().Format(time.RFC3339))
			}
			for _, r := range e.Reasons {
				fmt.Fprintf(a.stdout, "- %s\n", r)
			}
			return nil
		},
	}
	f.add(c)
	return c
}
