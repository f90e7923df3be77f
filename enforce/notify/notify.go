// Package notify tells people and other systems about alerts: named
// channels (a webhook, an email, an NDJSON file) configured under
// notifications: in moat.yaml and chosen by the profiles' notifications:
// key. Delivery is off the ban path: the dispatcher only queues an alert
// (Notify never waits), and each channel's own goroutine groups, renders,
// sends with a timeout per attempt and retries with backoff. A full queue
// drops its oldest alert and counts it; a hanging, refusing or panicking
// channel loses its own messages, never a ban and never the daemon.
package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// Sender delivers one rendered message; it returns once the other end
// took it or ctx ends.
type Sender interface {
	Send(ctx context.Context, m *Message) error
	// Target says where messages go, with secrets masked.
	Target() string
	// Check renders m's templates without sending, so a template that
	// fails on an alert is found at load time.
	Check(m *Message) error
}

// Options tune a channel's delivery; zero values take the defaults.
type Options struct {
	// Queue bounds the alerts waiting (default 1000).
	Queue int
	// GroupWait holds a message's first alert for others to join, up to
	// GroupThreshold alerts (default 1 without GroupWait, 100 with).
	GroupWait      time.Duration
	GroupThreshold int
	// Timeout bounds one attempt (default 10s). Retries more attempts
	// follow a failed one (0 is 3, -1 none), Backoff apart (default 1s),
	// doubling up to MaxBackoff (default 5m).
	Timeout             time.Duration
	Retries             int
	Backoff, MaxBackoff time.Duration
}

func (o Options) withDefaults() Options {
	if o.Queue <= 0 {
		o.Queue = 1000
	}
	if o.GroupThreshold <= 0 {
		o.GroupThreshold = 1
		if o.GroupWait > 0 {
			o.GroupThreshold = 100
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	switch {
	case o.Retries == 0:
		o.Retries = 3
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(5*time.Minute, o.Backoff)
	}
	return o
}

// Manager holds the channels. Notify is safe from any goroutine; Run
// delivers until its context ends.
type Manager struct {
	host     string
	channels map[string]*channel
	names    []string
	// OnError, when set, hears of each message given up on (after its
	// retries) and each sender panic, for the daemon's log.
	OnError func(channel string, err error)
	started atomic.Bool
}

// NewManager returns a manager without channels; Add them before Run.
func NewManager() *Manager {
	host, _ := os.Hostname()
	return &Manager{host: host, channels: map[string]*channel{}}
}

// ErrUnknownChannel is returned for a channel name no configuration has.
var ErrUnknownChannel = errors.New("no such notification channel")

// Add adds a channel named name of kind (for listings) sending with s.
func (m *Manager) Add(name, kind string, s Sender, o Options) error {
	if m.started.Load() {
		return fmt.Errorf("notification %s: channels are added before Run", name)
	}
	if _, dup := m.channels[name]; dup {
		return fmt.Errorf("notification %s: defined twice", name)
	}
	o = o.withDefaults()
	m.channels[name] = &channel{name: name, kind: kind, send: s, opt: o, q: newRing(o.Queue), wake: make(chan struct{}, 1), host: m.host}
	m.names = append(m.names, name)
	sort.Strings(m.names)
	return nil
}

// Has reports whether a channel is called name.
func (m *Manager) Has(name string) bool {
	_, ok := m.channels[name]
	return ok
}

// Notify queues an alert and its decisions for each named channel and
// returns at once: it never waits for a channel, whatever state it is in.
// An unknown name is skipped (profiles are checked against the
// configuration at load). a and ds are kept as they are: alerts are only
// read once raised.
func (m *Manager) Notify(a model.Alert, ds []model.Decision, channels []string) {
	if m == nil {
		return
	}
	now := time.Now()
	for _, name := range channels {
		if c, ok := m.channels[name]; ok {
			c.enqueue(item{a: a, ds: ds, at: now})
		}
	}
}

// Run delivers every channel's queue until ctx ends; alerts still queued
// then are not sent.
func (m *Manager) Run(ctx context.Context) error {
	m.started.Store(true)
	var wg sync.WaitGroup
	for _, c := range m.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx, m.report)
		}()
	}
	wg.Wait()
	return nil
}

func (m *Manager) report(name string, err error) {
	if m.OnError != nil {
		m.OnError(name, err)
	}
}

// Test sends a sample alert through channel name at once, with one
// attempt bounded by the channel's timeout, and returns its error.
func (m *Manager) Test(ctx context.Context, name string) error {
	c, ok := m.channels[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	msg := newMessage(name, m.host, []item{{a: SampleAlert(time.Now()), ds: sampleDecisions(time.Now()), at: time.Now()}})
	msg.Test = true
	return c.attempt(ctx, msg)
}

// Stats is one channel's state, for listings and metrics.
type Stats struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Target string `json:"target"`
	// Queued is the alerts waiting now, QueueCap the bound.
	Queued   int `json:"queued"`
	QueueCap int `json:"queue_cap"`
	// Sent and Failed count messages (a group is one), Dropped alerts
	// pushed out of a full queue, Attempts every try including retries.
	Sent     uint64 `json:"sent"`
	Failed   uint64 `json:"failed"`
	Dropped  uint64 `json:"dropped"`
	Attempts uint64 `json:"attempts"`
	// Latency is the attempts' durations, in LatencyBounds.
	Latency     Histogram `json:"-"`
	LastSent    time.Time `json:"last_sent,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Stats returns every channel's state, by name.
func (m *Manager) Stats() []Stats {
	out := make([]Stats, 0, len(m.names))
	for _, n := range m.names {
		out = append(out, m.channels[n].stats())
	}
	return out
}

// Check renders channel name's templates on a sample alert.
func (m *Manager) Check(name string) error {
	c, ok := m.channels[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	msg := newMessage(name, m.host, []item{{a: SampleAlert(time.Now()), ds: sampleDecisions(time.Now())}})
	return c.send.Check(msg)
}

// FromConfig builds the channels cfg configures. A template that fails on
// a sample alert, or a password file that cannot be read, is an error at
// the channel's line in the configuration file.
func FromConfig(cfg *config.Config) (*Manager, error) {
	m := NewManager()
	for _, name := range cfg.NotificationNames() {
		n := cfg.Notifications[name]
		var s Sender
		var err error
		switch n.Kind {
		case config.NotifyWebhook:
			s, err = newWebhook(n)
		case config.NotifyEmail:
			s, err = newEmail(n)
		case config.NotifyFile:
			s = newFile(n)
		default:
			return nil, cfg.NotificationError(name, fmt.Sprintf("kind %q: want webhook, email or file", n.Kind), "kind")
		}
		if err != nil {
			return nil, cfg.NotificationError(name, err.Error(), keyOf(err)...)
		}
		o := Options{Queue: n.Queue, GroupWait: n.GroupWait, GroupThreshold: n.GroupThreshold, Timeout: n.Timeout, Retries: n.Retries, Backoff: n.RetryBackoff}
		if err := m.Add(name, n.Kind, s, o); err != nil {
			return nil, cfg.NotificationError(name, err.Error())
		}
		if err := m.Check(name); err != nil {
			var ke *keyError
			if errors.As(err, &ke) && ke.line > 0 {
				return nil, cfg.NotificationTemplateError(name, ke.key, ke.line, err.Error())
			}
			return nil, cfg.NotificationError(name, err.Error(), keyOf(err)...)
		}
	}
	return m, nil
}

// keyError is an error about one key of a channel ("body",
// "smtp.password_file"), for the line of a configuration error.
type keyError struct {
	key string
	// line is the template's line at fault, 0 if none.
	line int
	err  error
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// keyOf is the key path of err's keyError, for config.NotificationError.
func keyOf(err error) []any {
	var ke *keyError
	if !errors.As(err, &ke) {
		return nil
	}
	var out []any
	for _, k := range strings.Split(ke.key, ".") {
		out = append(out, k)
	}
	return out
}
