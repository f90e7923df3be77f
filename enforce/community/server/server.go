// Package server is the community consensus server behind moat community
// serve. It speaks CrowdSec's CAPI (register, login, enrol, signals, the
// decision stream, under /v2 and /v3) so moat clients and CrowdSec agents
// alike can report and pull, and it publishes an address only when enough
// distinct, trusted reporters from distinct networks agree (docs/community.md).
//
// The server keeps no log lines, messages or context of a signal: only the
// address, the scenario, the reporter and the reporter's network, which
// the consensus rule needs and explain never shows.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is the server's consensus rule, admission and limits. Zero values
// take the defaults named beside each field.
type Config struct {
	// DSN is a postgres:// URL or a SQLite file path.
	DSN string
	// K is the distinct reporters an address needs (3).
	K int
	// MinNetworks is the distinct reporter networks it needs (2).
	MinNetworks int
	// Window is how far back reports count (24h).
	Window time.Duration
	// TTL is how long an address stays listed after its last report (24h).
	TTL time.Duration
	// MinWeight is the mean trust the K reporters must reach: an address
	// is listed when the sum of its reporters' trust is at least
	// K*MinWeight (0.5, which a fresh, honest reporter has).
	MinWeight float64
	// TrustAge is the reporter age at which the age part of trust is
	// full (7 days); TrustAgreed the listed reports at which the
	// agreement part is (10).
	TrustAge    time.Duration
	TrustAgreed int
	// MaxList caps the addresses one pull returns (10000).
	MaxList int
	// Allowlist and Canaries are addresses no honest reporter sees
	// attacking: reporting one collapses the reporter's trust, as does
	// reporting a reserved or bogon address.
	Allowlist, Canaries []netip.Prefix
	// EnrolmentToken admits a reporter that presents it (CrowdSec's
	// console enrolment key); Open admits everyone instead.
	EnrolmentToken string
	Open           bool
	// Secret signs login tokens (random per process when empty);
	// TokenLifetime is their lifetime (2h).
	Secret        []byte
	TokenLifetime time.Duration
	// ReporterRate and ReporterBurst bound the signals per reporter
	// (10/s, burst 2000); NetRate and NetBurst the requests per source
	// /24 (IPv4) or /64 (IPv6) (20/s, burst 200). Negative disables.
	ReporterRate  float64
	ReporterBurst int
	NetRate       float64
	NetBurst      int
	// MaxBatch bounds the signals of one request (1000).
	MaxBatch int
	// MaxPending bounds the registered reporters not enrolled yet
	// (10000), so registrations cannot grow the database without end;
	// those older than a week are forgotten at evaluation.
	MaxPending int
	// TrustForwardedFor takes the client address from X-Forwarded-For;
	// only behind a proxy that sets it.
	TrustForwardedFor bool
	// Now is the clock (time.Now).
	Now func() time.Time
	// OnError, when set, is told of a failed periodic evaluation (which
	// Run retries at the next tick rather than stopping the server) and of
	// requests answered with an internal error.
	OnError func(error)
}

func (c *Config) defaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.K, 3)
	def(&c.MinNetworks, 2)
	defd(&c.Window, 24*time.Hour)
	defd(&c.TTL, 24*time.Hour)
	defd(&c.TrustAge, 7*24*time.Hour)
	defd(&c.TokenLifetime, 2*time.Hour)
	def(&c.TrustAgreed, 10)
	def(&c.MaxList, 10000)
	def(&c.ReporterBurst, 2000)
	def(&c.NetBurst, 200)
	def(&c.MaxBatch, 1000)
	def(&c.MaxPending, 10000)
	if c.MinWeight == 0 {
		c.MinWeight = 0.5
	}
	if c.ReporterRate == 0 {
		c.ReporterRate = 10
	}
	if c.NetRate == 0 {
		c.NetRate = 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DSN == "" {
		return errors.New("community server: no database (a SQLite path or a postgres:// DSN)")
	}
	if c.K < 1 || c.MinNetworks < 1 || c.MinWeight < 0 || c.MinWeight > 1 {
		return fmt.Errorf("community server: k %d, min networks %d, min weight %v: want k, networks >= 1 and weight in [0,1]", c.K, c.MinNetworks, c.MinWeight)
	}
	if c.EnrolmentToken == "" && !c.Open {
		return errors.New("community server: no enrolment token; set one or admit everyone explicitly (open)")
	}
	if len(c.Secret) == 0 {
		c.Secret = make([]byte, 32)
		if _, err := rand.Read(c.Secret); err != nil {
			return fmt.Errorf("community server: token secret: %w", err)
		}
	}
	return nil
}

// Server is the community server. It is safe for concurrent use.
type Server struct {
	cfg      Config
	db       *db
	byRep    *limiter
	byNet    *limiter
	hashing  chan struct{}
	canaries []netip.Prefix

	// Stats count what the server refused or dropped; read with Stats.
	stats stats
}

// Open opens (and creates) the database and returns the server.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	d, err := openDB(ctx, cfg.DSN)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		db:      d,
		byRep:   newLimiter(cfg.ReporterRate, cfg.ReporterBurst, 100000),
		byNet:   newLimiter(cfg.NetRate, cfg.NetBurst, 100000),
		hashing: make(chan struct{}, 4),
	}
	s.canaries = append(append(s.canaries, cfg.Allowlist...), cfg.Canaries...)
	return s, nil
}

// Close closes the database.
func (s *Server) Close() error { return s.db.Close() }

// Run evaluates the consensus every interval until ctx ends; it returns
// nil when cancelled.
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.Evaluate(ctx); err != nil && ctx.Err() == nil && s.cfg.OnError != nil {
				s.cfg.OnError(err)
			}
		}
	}
}
