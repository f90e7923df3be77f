// Package client is the daemon's side of the community exchange: it
// shares minimal signals of local bans with a community server and pulls
// the server's consensus blocklist into decisions of origin community.
//
// What leaves the host is fixed by wire.Signal: the scenario's name, hash
// and version, the times, and the source address. Only alerts that took a
// local ban (never a manual, fleet or pulled decision) and whose source is
// one public unicast, non-allowlisted address are shared, each (address,
// scenario) at most once per dedup window. Signals wait in a bounded queue, persisted in the state
// directory, and are sent in batches with backoff.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Decisions is what the client needs of the decision service.
type Decisions interface {
	Allowlisted(netip.Prefix) bool
	Add(ctx context.Context, ds []model.Decision) error
	Delete(ctx context.Context, f store.Filter) ([]model.Decision, error)
	List(ctx context.Context, f store.Filter) ([]store.Record, error)
}

// Config configures the client. Share and Pull are independent.
type Config struct {
	Credentials Credentials
	HTTP        *http.Client
	Decisions   Decisions
	// Share sends signals; Pull pulls the blocklist.
	Share, Pull bool
	// StateDir holds the persisted queue.
	StateDir string
	// Scenarios names the scenarios this host runs, sent at login: the
	// server filters the pulled list to them.
	Scenarios func() []string
	// PushInterval (10s) is how often the queue is sent, in batches of
	// at most Batch (250); PullInterval (1h) how often the list is pulled.
	PushInterval, PullInterval time.Duration
	Batch                      int
	// QueueSize bounds the queue (10000): past it, the oldest signals
	// are dropped (and counted).
	QueueSize int
	// MaxPulled caps the community decisions held (10000).
	MaxPulled int
	// Dedup is the window an (address, scenario) is shared once in (15m).
	Dedup time.Duration
	// MaxBackoff bounds the wait after failed sends (5m).
	MaxBackoff time.Duration
	// OnError is told of failed sends and pulls, which are retried.
	OnError func(what string, err error)
	Now     func() time.Time
}

// Client is the community client. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu    sync.Mutex
	queue []wire.Signal
	seen  map[dedupKey]time.Time
	dirty bool
	token string

	sent, dropped, skipped, pulled, removed, errs atomic.Int64
	// pulls and pullErrors count pulls tried and failed; held is the
	// community decisions held after the last pull (for the metrics).
	pulls, pullErrors, held atomic.Int64
}

type dedupKey struct {
	addr     netip.Addr
	scenario string
}

// New returns a client and loads the queue a previous run persisted.
func New(cfg Config) (*Client, error) {
	if cfg.HTTP == nil || cfg.Credentials.Server == "" {
		return nil, errors.New("community client: no server credentials")
	}
	if cfg.Pull && cfg.Decisions == nil {
		return nil, errors.New("community client: pull without a decision service")
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	num := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&cfg.PushInterval, 10*time.Second)
	dur(&cfg.PullInterval, time.Hour)
	dur(&cfg.Dedup, 15*time.Minute)
	dur(&cfg.MaxBackoff, 5*time.Minute)
	num(&cfg.Batch, 250)
	num(&cfg.QueueSize, 10000)
	num(&cfg.MaxPulled, 10000)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Scenarios == nil {
		cfg.Scenarios = func() []string { return nil }
	}
	c := &Client{cfg: cfg, seen: map[dedupKey]time.Time{}}
	if cfg.StateDir != "" {
		b, err := os.ReadFile(filepath.Join(cfg.StateDir, QueueFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("community queue: %w", err)
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &c.queue); err != nil {
				// A corrupt queue is lost signals, not a reason to stop.
				c.queue = nil
				c.errs.Add(1)
			}
			if len(c.queue) > cfg.QueueSize {
				c.queue = c.queue[len(c.queue)-cfg.QueueSize:]
			}
		}
	}
	return c, nil
}

// Stats are the client's counters.
type Stats struct {
	Queued                                          int
	Sent, Dropped, Skipped, Pulled, Removed, Errors int64
	// Pulls and PullErrors count pulls tried and failed; Held is the
	// community decisions held after the last successful pull.
	Pulls, PullErrors, Held int64
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	q := len(c.queue)
	c.mu.Unlock()
	return Stats{Queued: q, Sent: c.sent.Load(), Dropped: c.dropped.Load(), Skipped: c.skipped.Load(), Pulled: c.pulled.Load(),
		Removed: c.removed.Load(), Errors: c.errs.Load(), Pulls: c.pulls.Load(), PullErrors: c.pullErrors.Load(), Held: c.held.Load()}
}

// Share queues a signal of a local alert's source when the alert took a
// local ban and the source may be shared. It never blocks on the network:
// the alert pipeline calls it. The source is the alert's address, not the
// decision's value, which may have been widened (ipv6_ban_prefix).
func (c *Client) Share(a model.Alert, ds []model.Decision) {
	if !c.cfg.Share {
		return
	}
	addr, ok := c.shareable(a, ds)
	if !ok {
		c.skipped.Add(1)
		return
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := dedupKey{addr, a.Scenario}
	if t, ok := c.seen[k]; ok && now.Sub(t) < c.cfg.Dedup {
		c.skipped.Add(1)
		return
	}
	if len(c.seen) >= 4*c.cfg.QueueSize {
		c.forget(now)
	}
	c.seen[k] = now
	ip := addr.String()
	c.queue = append(c.queue, wire.Signal{
		Scenario: a.Scenario, ScenarioHash: a.ScenarioHash, ScenarioVersion: a.ScenarioVersion,
		Source:  wire.Source{Scope: model.ScopeIP, Value: ip, IP: ip},
		StartAt: a.Start.UTC(), StopAt: a.Stop.UTC(), CreatedAt: now.UTC(),
	})
	if over := len(c.queue) - c.cfg.QueueSize; over > 0 {
		c.queue = append(c.queue[:0], c.queue[over:]...)
		c.dropped.Add(int64(over))
	}
	c.dirty = true
}

// shareable returns the address alert a may share: its source is one
// public address, not allowlisted, and one of ds is an enforced local ban
// covering it (never a manual, fleet or pulled decision).
func (c *Client) shareable(a model.Alert, ds []model.Decision) (netip.Addr, bool) {
	src := a.Source
	if a.Simulated || a.Scenario == "" || !src.IsValid() || src.Bits() != src.Addr().BitLen() {
		return netip.Addr{}, false
	}
	addr := src.Addr().Unmap()
	if !wire.Public(addr) {
		return netip.Addr{}, false
	}
	if c.cfg.Decisions != nil && c.cfg.Decisions.Allowlisted(netip.PrefixFrom(addr, addr.BitLen())) {
		return netip.Addr{}, false
	}
	for _, d := range ds {
		if d.Origin == model.OriginLocal && !d.Simulated && d.Value.Contains(addr) {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

// forget drops dedup entries older than the window; if all are recent
// (a flood), the table is reset, which at worst shares a few twice.
func (c *Client) forget(now time.Time) {
	for k, t := range c.seen {
		if now.Sub(t) >= c.cfg.Dedup {
			delete(c.seen, k)
		}
	}
	if len(c.seen) >= 4*c.cfg.QueueSize {
		clear(c.seen)
	}
}

// Run sends and pulls until ctx ends, then persists the queue; it returns
// nil when cancelled.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if c.cfg.Share {
		wg.Go(func() { c.pushLoop(ctx) })
	}
	if c.cfg.Pull {
		wg.Go(func() { c.pullLoop(ctx) })
	}
	wg.Wait()
	return c.persist()
}

// persist writes the queue to the state directory when it changed.
func (c *Client) persist() error {
	c.mu.Lock()
	if !c.dirty || c.cfg.StateDir == "" {
		c.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(c.queue)
	c.dirty = false
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("community queue: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.cfg.StateDir, QueueFile), b, 0o600); err != nil {
		return fmt.Errorf("community queue: %w", err)
	}
	return nil
}

func (c *Client) fail(what string, err error) {
	c.errs.Add(1)
	if c.cfg.OnError != nil {
		c.cfg.OnError(what, err)
	}
}

// backoff doubles wait up to the maximum.
func (c *Client) backoff(wait time.Duration) time.Duration {
	return min(c.cfg.MaxBackoff, max(2*wait, time.Second))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Client) pushLoop(ctx context.Context) {
	wait := c.cfg.PushInterval
	for sleep(ctx, wait) {
		if err := c.Flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.fail("share", err)
			wait = c.backoff(wait)
		} else {
			wait = c.cfg.PushInterval
		}
		if err := c.persist(); err != nil {
			c.fail("persist queue", err)
		}
	}
}

// Flush sends the queue in batches until it is empty or a send fails.
func (c *Client) Flush(ctx context.Context) error {
	for {
		c.mu.Lock()
		n := min(len(c.queue), c.cfg.Batch)
		batch := append([]wire.Signal(nil), c.queue[:n]...)
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := c.authed(ctx, "POST", "/v3/signals", batch, nil); err != nil {
			return err
		}
		c.mu.Lock()
		// Share may have trimmed the head meanwhile (queue full): drop
		// what was sent only if it is still there.
		if len(c.queue) >= n && c.queue[0] == batch[0] {
			c.queue = append(c.queue[:0], c.queue[n:]...)
		}
		c.dirty = true
		c.mu.Unlock()
		c.sent.Add(int64(n))
	}
}

// authed calls the server with a token, logging in first and again once
// when the token was refused.
func (c *Client) authed(ctx context.Context, method, path string, in, out any) error {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	for try := 0; ; try++ {
		if tok == "" {
			var err error
			if tok, err = login(ctx, c.cfg.HTTP, c.cfg.Credentials, c.cfg.Scenarios()); err != nil {
				return err
			}
			c.mu.Lock()
			c.token = tok
			c.mu.Unlock()
		}
		err := call(ctx, c.cfg.HTTP, method, c.cfg.Credentials.Server+path, tok, in, out)
		var se *StatusError
		if try == 0 && errors.As(err, &se) && se.Code == http.StatusUnauthorized {
			tok = ""
			continue
		}
		return err
	}
}
