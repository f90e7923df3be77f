package api

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Changes wakes the fleet streams when the store changes. Wrap the
// decision service's store with Wrap, hand it to the server (Server.Changes):
// each stored write then wakes every stream at once, instead of a poll.
type Changes struct {
	// gen counts the Notify calls: a read begun at generation g sees
	// every write notified up to g.
	gen atomic.Uint64
	// last is the last wake: the channel the next one closes, and the
	// generation it woke the streams at. Each stream reads it at each
	// wake, without a lock.
	last atomic.Pointer[wakeState]
	// streams is the streams open, which spaces the wakes (wakeEvery).
	streams atomic.Int64

	mu sync.Mutex
	// woke is when the streams were last woken, and armed whether a
	// wake is due.
	woke  time.Time
	armed bool
}

// wakeState is one wake of the streams.
type wakeState struct {
	ch  chan struct{}
	gen uint64
}

// The spacing of the streams' wake-ups. A write after a quiet spell wakes
// them at once; writes coming faster are gathered into one wake per
// period. Every wake costs each stream a write to its agent (a system
// call that wakes the agent's reader), whatever it carries: with a wake
// per pushed alert, a thousand streams spent the server's CPU on write
// calls carrying one decision each. The period grows with the streams
// open (fleetWakePerStream each), so the writes a burst costs stay near
// 10,000 a second however many agents listen, between fleetWakeEvery
// (a few agents: the latency) and fleetWakeMax (a thousand and more).
const (
	fleetWakeEvery     = 20 * time.Millisecond
	fleetWakePerStream = 100 * time.Microsecond
	fleetWakeMax       = 100 * time.Millisecond
)

// wakeEvery is the wakes' spacing with n streams open.
func wakeEvery(n int64) time.Duration {
	return min(max(fleetWakeEvery, time.Duration(n)*fleetWakePerStream), fleetWakeMax)
}

// NewChanges returns a notifier.
func NewChanges() *Changes {
	c := &Changes{}
	c.last.Store(&wakeState{ch: make(chan struct{})})
	return c
}

// wait returns a channel closed at the next wake, and the generation of
// the last one. A stream that read at a wake's generation saw every write
// notified before the wake; one notified since is followed by a wake of
// its own (Notify arms one), so the streams of one wake all take one
// read, begun at or after it, and none waits for a later read to cover
// the writes that came in while the thousand of them took their turns.
func (c *Changes) wait() (<-chan struct{}, uint64) {
	w := c.last.Load()
	return w.ch, w.gen
}

// current is the generation now: a read begun after it sees every write
// notified up to it.
func (c *Changes) current() uint64 { return c.gen.Load() }

// Notify wakes every stream waiting, at once or, when the last wake was
// less than a period ago (see wakeEvery), when that period ends.
func (c *Changes) Notify() {
	// The generation moves now: a read begun from here on sees the
	// write, whenever the wake comes.
	c.gen.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		return
	}
	if d := wakeEvery(c.streams.Load()) - time.Since(c.woke); d > 0 {
		c.armed = true
		time.AfterFunc(d, c.wake)
		return
	}
	c.wakeLocked()
}

func (c *Changes) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.wakeLocked()
}

func (c *Changes) wakeLocked() {
	old := c.last.Swap(&wakeState{ch: make(chan struct{}), gen: c.gen.Load()})
	close(old.ch)
	c.woke = time.Now()
}

// Wrap returns st with every write that may change the decision stream
// followed by Notify, once the write is committed (a stream woken before
// would read nothing new).
func (c *Changes) Wrap(st decision.Store) decision.Store { return notifyingStore{st, c} }

type notifyingStore struct {
	decision.Store
	c *Changes
}

func (s notifyingStore) InsertAlert(ctx context.Context, a model.Alert, ds []model.Decision) (int64, error) {
	id, err := s.Store.InsertAlert(ctx, a, ds)
	if err == nil && len(ds) > 0 {
		s.c.Notify()
	}
	return id, err
}

func (s notifyingStore) InsertDecisions(ctx context.Context, ds []model.Decision) error {
	err := s.Store.InsertDecisions(ctx, ds)
	if err == nil {
		s.c.Notify()
	}
	return err
}

func (s notifyingStore) DeleteDecisions(ctx context.Context, f store.Filter) ([]model.Decision, error) {
	ds, err := s.Store.DeleteDecisions(ctx, f)
	if len(ds) > 0 {
		s.c.Notify()
	}
	return ds, err
}

func (s notifyingStore) DeleteIDs(ctx context.Context, ids []int64) ([]model.Decision, error) {
	ds, err := s.Store.DeleteIDs(ctx, ids)
	if len(ds) > 0 {
		s.c.Notify()
	}
	return ds, err
}

func (s notifyingStore) DeleteAll(ctx context.Context) ([]model.Decision, error) {
	ds, err := s.Store.DeleteAll(ctx)
	if len(ds) > 0 {
		s.c.Notify()
	}
	return ds, err
}

func (s notifyingStore) Expire(ctx context.Context, now time.Time) (int, error) {
	n, err := s.Store.Expire(ctx, now)
	if n > 0 {
		s.c.Notify()
	}
	return n, err
}
