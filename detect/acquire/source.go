package acquire

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/detect"
)

// Source streams lines from one configured input. Stream runs in one
// goroutine, blocks until ctx is cancelled (or, for mode cat and replays,
// until the input is read) and returns nil on cancellation.
type Source interface {
	Name() string
	Stream(ctx context.Context, out chan<- detect.Line) error
	Stats() Stats
}

// Stats is a snapshot of a source's counters.
type Stats struct {
	Lines  uint64 // lines sent
	Bytes  uint64 // bytes of input consumed (including newlines and cut parts)
	Errors uint64 // read errors: unreadable files, corrupt journal files, refused connections, exits of a command
	Cut    uint64 // lines cut at max_line_length (max_message_len for syslog)
	// Malformed counts syslog messages that followed neither RFC 3164
	// nor RFC 5424; what could be read of them was still handed on.
	Malformed uint64
	// Dropped counts syslog datagrams the kernel dropped before moat read
	// them (the socket's receive buffer was full): UDP has no flow control.
	Dropped uint64
	// Lag is how far behind the source the newest line sent was: ReadAt
	// minus the entry's own time (journald), or minus when moat noticed the
	// data (files, whose lines carry no time before parsing).
	Lag time.Duration
	// LastError is the newest read error, for the daemon to log.
	LastError error
}

// Positioner is implemented by sources that can tell when they have fixed
// where they start reading: from then on, every line written to the input
// will be read. A daemon waits for it before announcing it is ready.
type Positioner interface {
	Positioned() <-chan struct{}
}

// startGate is closed once, when the start position is fixed or the source
// gave up trying.
type startGate struct {
	once sync.Once
	ch   chan struct{}
}

func newStartGate() startGate { return startGate{ch: make(chan struct{})} }

func (g *startGate) open() { g.once.Do(func() { close(g.ch) }) }

var (
	_ Positioner = (*fileSource)(nil)
	_ Positioner = (*journalSource)(nil)
)

// runSaver calls save every StateInterval, and whenever kick (nil for
// none) fires, until the returned stop is called, which also saves one
// last time. Positions are written off the read path, so an fsync never
// delays a line.
func runSaver(save func(), kick <-chan struct{}) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(StateInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				save()
			case <-kick:
				save()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		save()
	}
}

// counters is the live, concurrently readable side of Stats.
type counters struct {
	lines, bytes, errors, cut atomic.Uint64
	malformed, dropped        atomic.Uint64
	lag                       atomic.Int64
	mu                        sync.Mutex
	lastErr                   error
}

func (c *counters) fail(err error) {
	c.errors.Add(1)
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	last := c.lastErr
	c.mu.Unlock()
	return Stats{
		Lines:     c.lines.Load(),
		Bytes:     c.bytes.Load(),
		Errors:    c.errors.Load(),
		Cut:       c.cut.Load(),
		Malformed: c.malformed.Load(),
		Dropped:   c.dropped.Load(),
		Lag:       time.Duration(c.lag.Load()),
		LastError: last,
	}
}

// New builds the source cfg describes. Its position is kept under stateDir
// ("" keeps no state: every start is a first start).
func New(cfg Config, stateDir string, opts ...Option) (Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = defaultName(&cfg)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch cfg.Source {
	case KindFile:
		return newFileSource(cfg, stateDir, o)
	case KindJournal:
		return newJournalSource(cfg, stateDir, o)
	case KindSyslog:
		return newSyslogSource(cfg), nil
	case KindCommand:
		return newCommandSource(cfg, o), nil
	case KindDocker:
		return newDockerSource(cfg, stateDir, o)
	}
	return nil, fmt.Errorf("%s: %w: source %q", cfg.Where(), ErrConfig, cfg.Source)
}

// sendAt hands l to out unless ctx ends first and returns the ReadAt it
// stamped. ReadAt is taken here, as late as possible: time.Now is a vDSO
// call, no syscall.
func sendAt(ctx context.Context, out chan<- detect.Line, l detect.Line) (time.Time, bool) {
	l.ReadAt = time.Now()
	select {
	case out <- l:
		return l.ReadAt, true
	case <-ctx.Done():
		return l.ReadAt, false
	}
}
