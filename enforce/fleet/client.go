package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// Config configures the client; zero durations and sizes take defaults.
type Config struct {
	// Server is the fleet server's base URL (https://fleet.example:8089).
	Server string
	// Servers, when set instead of Server, are replicas of one fleet
	// server (daemons on one PostgreSQL store, so one decision sequence):
	// the client uses one and moves to the next when it fails.
	Servers []string
	// MachineID and Password log this agent in (POST /v1/watchers/login).
	MachineID, Password string
	// BouncerKey, when set, lets the agent poll the bouncer stream of a
	// server without a fleet stream (a CrowdSec LAPI).
	BouncerKey string
	// HTTP is the client used (TLS set up by the caller, see NewHTTPClient).
	HTTP *http.Client
	// StateDir holds the stream position (StateFile).
	StateDir string
	// Applier holds the fleet decisions.
	Applier Applier

	// PushBatch is the most alerts in one push (default 100); PushInterval
	// how long a push waits for more alerts after the first (default 0:
	// none, the alert leaves at once).
	PushBatch    int
	PushInterval time.Duration
	// QueueSize bounds the alerts waiting to be pushed (default 10000);
	// past it the newest are dropped and counted, never the local ban.
	QueueSize int
	// RetryMin and RetryMax bound the backoff of pushes and reconnects
	// (defaults 200 ms and 30 s).
	RetryMin, RetryMax time.Duration
	// StreamTimeout is how long a stream may stay silent before it is
	// taken for dead (default 35 s: the server's heartbeat is 10 s).
	StreamTimeout time.Duration
	// PollInterval is the bouncer stream's poll period (default 10 s).
	PollInterval time.Duration

	// OnError, when set, is told of each failed push, stream or apply,
	// for the caller to log.
	OnError func(what string, err error)
	// OnConnect, when set, is told each time the stream to server
	// connects (true) or drops (false).
	OnConnect func(connected bool, server string, seq int64)
	// OnLag, when set, sees each applied decision's lag: from the server
	// reading it from its store to this agent holding it.
	OnLag func(time.Duration)
}

// Client is the fleet agent's client. Run it; Push from any goroutine.
type Client struct {
	cfg   Config
	queue chan pushItem

	// srv indexes cfg.Servers: the replica pushes and the stream use.
	srv atomic.Int32

	// token was issued by tokenServer: each replica may sign with its own
	// secret, so a token is not taken to another.
	mu          sync.Mutex
	token       string
	tokenServer string

	// own holds the bans this host pushed (see remember).
	ownMu sync.Mutex
	own   map[ownKey]time.Time

	stats struct {
		pushed, pushErrors, dropped, reconnects, applied, deleted atomic.Int64
		failovers                                                 atomic.Int64
		seq                                                       atomic.Int64
		connected                                                 atomic.Bool
	}
}

// Stats counts what the client did since start.
type Stats struct {
	// Pushed is alerts the server took; PushErrors failed push attempts;
	// Dropped alerts left out, the queue being full.
	Pushed, PushErrors, Dropped int64
	// Reconnects is streams reopened after one ended; Failovers moves
	// to the next replica of Servers.
	Reconnects, Failovers int64
	// Applied and Deleted are fleet decisions added and removed here.
	Applied, Deleted int64
	// Seq is the stream position; Connected whether a stream is open.
	Seq       int64
	Connected bool
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Pushed: s.pushed.Load(), PushErrors: s.pushErrors.Load(), Dropped: s.dropped.Load(),
		Reconnects: s.reconnects.Load(), Failovers: s.failovers.Load(), Applied: s.applied.Load(), Deleted: s.deleted.Load(),
		Seq: s.seq.Load(), Connected: s.connected.Load(),
	}
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Server != "" && len(cfg.Servers) > 0 {
		return nil, errors.New("fleet: want one of Server and Servers")
	}
	if cfg.Server != "" {
		cfg.Servers = []string{cfg.Server}
	}
	if len(cfg.Servers) == 0 || cfg.MachineID == "" || cfg.Password == "" {
		return nil, errors.New("fleet: want a server URL, a machine id and a password")
	}
	if cfg.Applier == nil {
		return nil, errors.New("fleet: no applier")
	}
	cfg.Servers = slices.Clone(cfg.Servers)
	for i, s := range cfg.Servers {
		if s == "" {
			return nil, fmt.Errorf("fleet: server %d: empty URL", i)
		}
		cfg.Servers[i] = strings.TrimRight(s, "/")
	}
	cfg.Server = ""
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	if cfg.PushBatch <= 0 {
		cfg.PushBatch = 100
	}
	cfg.PushBatch = min(cfg.PushBatch, api.MaxAlertsPerPush)
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 200 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = 35 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	return &Client{cfg: cfg, queue: make(chan pushItem, cfg.QueueSize)}, nil
}

// NewHTTPClient builds the HTTP client for a server whose certificate
// caFile (PEM; "" for the system roots) signed; insecure skips the check,
// for tests only.
func NewHTTPClient(caFile string, insecure bool) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fleet: ca file %s: no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	// Pushes and the stream are two connections that stay open.
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: tr}, nil
}

// Run pushes and streams until ctx ends; it returns nil then.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pushLoop(ctx) }()
	go func() { defer wg.Done(); c.streamLoop(ctx) }()
	wg.Wait()
	return nil
}

func (c *Client) report(what string, err error) {
	if c.cfg.OnError != nil && err != nil {
		c.cfg.OnError(what, err)
	}
}

// errUnauthorized is a 401: the token expired or the server restarted
// with a new secret; the caller logs in again.
var errUnauthorized = errors.New("unauthorized")

// statusError is an answer other than the one expected.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.code, e.msg)
}

func (e *statusError) Is(target error) bool {
	return target == errUnauthorized && e.code == http.StatusUnauthorized
}

func readStatus(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var eb struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &eb) == nil && eb.Message != "" {
		msg = eb.Message
	}
	return &statusError{code: resp.StatusCode, msg: msg}
}

// server returns the replica in use and its index in Servers.
func (c *Client) server() (int, string) {
	if len(c.cfg.Servers) == 0 {
		return 0, c.cfg.Server
	}
	i := int(c.srv.Load())
	return i, c.cfg.Servers[i]
}

// Server returns the base URL of the replica in use.
func (c *Client) Server() string {
	_, s := c.server()
	return s
}

// failover moves to the replica after the one at index i, which failed.
// The stream and the pushes may both see one replica fail: only the first
// to report it moves, so the second does not skip the next replica.
func (c *Client) failover(i int) {
	n := len(c.cfg.Servers)
	if n < 2 {
		return
	}
	if c.srv.CompareAndSwap(int32(i), int32((i+1)%n)) {
		c.stats.failovers.Add(1)
	}
}

// login gets a token from base, unless one from base newer than stale is
// held already.
func (c *Client) login(ctx context.Context, base, stale string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && c.tokenServer == base && c.token != stale {
		return c.token, nil
	}
	body, _ := json.Marshal(map[string]any{"machine_id": c.cfg.MachineID, "password": c.cfg.Password, "scenarios": []string{}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/watchers/login", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login as %s: %w", c.cfg.MachineID, readStatus(resp))
	}
	var lr api.LoginResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&lr); err != nil || lr.Token == "" {
		return "", fmt.Errorf("login as %s: malformed answer: %v", c.cfg.MachineID, err)
	}
	c.token, c.tokenServer = lr.Token, base
	return c.token, nil
}

// authed sends to base the request newReq builds with a token, logging in
// again once if the token is refused.
func (c *Client) authed(ctx context.Context, base string, newReq func() (*http.Request, error)) (*http.Response, error) {
	c.mu.Lock()
	tok := c.token
	if c.tokenServer != base {
		tok = ""
	}
	c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if tok == "" || attempt > 0 {
			var err error
			if tok, err = c.login(ctx, base, tok); err != nil {
				return nil, err
			}
		}
		req, err := newReq()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.cfg.HTTP.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp, nil
		}
		resp.Body.Close()
	}
}

// backoff is an exponential delay with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether ctx is still live.
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

// fleetDecision is a server's decision as the agent holds it.
func fleetDecision(d api.FleetDecision, now time.Time) (model.Decision, bool) {
	v, geo, err := model.ParseDecisionValue(d.Value)
	if err != nil || d.ID <= 0 || d.Simulated {
		return model.Decision{}, false
	}
	// A port-scoped ban whose scope cannot be read is left out rather
	// than taken as a ban of every port.
	ports, err := model.ParsePorts(d.Ports)
	if err != nil || (d.Protocol != "" && d.Protocol != "tcp" && d.Protocol != "udp") {
		return model.Decision{}, false
	}
	if !d.Until.IsZero() && !d.Until.After(now) {
		return model.Decision{}, false
	}
	typ := d.Type
	if typ == "" {
		typ = "ban"
	}
	return model.Decision{
		Value: model.Canonical(v), Geo: geo, Type: typ, Origin: model.OriginFleet, Scenario: d.Scenario,
		Reason: ReasonOf(d.ID), Until: d.Until, Ports: ports, Protocol: d.Protocol,
	}, true
}
