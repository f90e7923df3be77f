package notify

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// item is a queued alert.
type item struct {
	a  model.Alert
	ds []model.Decision
	at time.Time
}

// ring is a bounded FIFO that, full, drops its oldest item: the newest
// alerts are the ones an operator acts on.
type ring struct {
	buf        []item
	head, size int
}

func newRing(n int) ring { return ring{buf: make([]item, n)} }

// push adds it and reports whether the oldest item was dropped for it.
func (r *ring) push(it item) (dropped bool) {
	if r.size == len(r.buf) {
		r.buf[r.head] = item{}
		r.head = (r.head + 1) % len(r.buf)
		r.size--
		dropped = true
	}
	r.buf[(r.head+r.size)%len(r.buf)] = it
	r.size++
	return dropped
}

// take removes up to n items, oldest first, into dst.
func (r *ring) take(dst []item, n int) []item {
	for ; n > 0 && r.size > 0; n-- {
		dst = append(dst, r.buf[r.head])
		r.buf[r.head] = item{}
		r.head = (r.head + 1) % len(r.buf)
		r.size--
	}
	return dst
}

type channel struct {
	name, kind, host string
	send             Sender
	opt              Options

	mu sync.Mutex
	q  ring
	// wake holds one token when items came since the sender last looked.
	wake chan struct{}

	sent, failed, dropped, attempts atomic.Uint64

	smu         sync.Mutex
	lat         Histogram
	lastSent    time.Time
	lastErr     string
	lastErrorAt time.Time
}

// enqueue is all the ban path does: a short critical section and a
// non-blocking wake-up.
func (c *channel) enqueue(it item) {
	c.mu.Lock()
	dropped := c.q.push(it)
	c.mu.Unlock()
	if dropped {
		c.dropped.Add(1)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *channel) take(dst []item, n int) []item {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.q.take(dst, n)
}

func (c *channel) run(ctx context.Context, report func(string, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for ctx.Err() == nil {
			batch := c.take(nil, c.opt.GroupThreshold)
			if len(batch) == 0 {
				break
			}
			if c.opt.GroupWait > 0 && len(batch) < c.opt.GroupThreshold {
				batch = c.gather(ctx, batch)
			}
			if err := c.deliver(ctx, batch); err != nil && ctx.Err() == nil {
				report(c.name, err)
			}
		}
	}
}

// gather waits, up to GroupWait after the first alert was queued, for
// more alerts to fill the message.
func (c *channel) gather(ctx context.Context, batch []item) []item {
	t := time.NewTimer(time.Until(batch[0].at.Add(c.opt.GroupWait)))
	defer t.Stop()
	for len(batch) < c.opt.GroupThreshold {
		select {
		case <-ctx.Done():
			return batch
		case <-t.C:
			return c.take(batch, c.opt.GroupThreshold-len(batch))
		case <-c.wake:
			batch = c.take(batch, c.opt.GroupThreshold-len(batch))
		}
	}
	return batch
}

// deliver sends one message, retrying with doubling backoff; the queue
// keeps filling (and dropping its oldest) meanwhile.
func (c *channel) deliver(ctx context.Context, batch []item) error {
	msg := newMessage(c.name, c.host, batch)
	wait := c.opt.Backoff
	var err error
	for try := 0; ; try++ {
		if err = c.attempt(ctx, msg); err == nil {
			c.sent.Add(1)
			return nil
		}
		if try >= c.opt.Retries || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, c.opt.MaxBackoff)
	}
	c.failed.Add(1)
	return fmt.Errorf("%d alert(s) not sent after %d attempt(s): %w", len(batch), c.opt.Retries+1, err)
}

// attempt runs the sender once under the channel's timeout. A panic in a
// sender (a template function, a server's odd answer) is this message's
// failure, not the daemon's.
func (c *channel) attempt(ctx context.Context, msg *Message) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			// The first frames say where; the whole stack would
			// swamp moat notifications list.
			err = fmt.Errorf("sender panicked: %v (%s)", r, panicSite(debug.Stack()))
		}
		c.attempts.Add(1)
		c.record(time.Since(start), err)
	}()
	return c.send.Send(ctx, msg)
}

func (c *channel) record(d time.Duration, err error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.lat.observe(d)
	if err != nil {
		c.lastErr, c.lastErrorAt = err.Error(), time.Now()
		return
	}
	c.lastSent = time.Now()
}

func (c *channel) stats() Stats {
	c.mu.Lock()
	queued := c.q.size
	c.mu.Unlock()
	c.smu.Lock()
	defer c.smu.Unlock()
	return Stats{
		Name: c.name, Kind: c.kind, Target: c.send.Target(),
		Queued: queued, QueueCap: len(c.q.buf),
		Sent: c.sent.Load(), Failed: c.failed.Load(), Dropped: c.dropped.Load(), Attempts: c.attempts.Load(),
		Latency: c.lat.clone(), LastSent: c.lastSent, LastError: c.lastErr, LastErrorAt: c.lastErrorAt,
	}
}

// latencyBounds are the upper bounds, in seconds, of Histogram's buckets.
var latencyBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// LatencyBounds returns the upper bounds, in seconds, of Histogram's
// buckets.
func LatencyBounds() []float64 { return append([]float64(nil), latencyBounds[:]...) }

// Histogram counts attempt durations; Counts[i] is those at or under
// LatencyBounds()[i] and above the bound before (not cumulative).
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

func (h *Histogram) observe(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(latencyBounds))
	}
	s := d.Seconds()
	h.Count++
	h.Sum += s
	for i, b := range latencyBounds {
		if s <= b {
			h.Counts[i]++
			return
		}
	}
}

func (h Histogram) clone() Histogram {
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// panicSite is the first frame of a panic's stack below the runtime's.
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") && i+3 < len(lines) {
			return strings.TrimSpace(lines[i+3])
		}
	}
	return "stack unavailable"
}
