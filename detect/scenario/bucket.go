package scenario

import (
	"time"

	"github.com/moatsec/moat/detect"
)

// Queue is the events a bucket holds, oldest first. Conditions address it
// as CrowdSec's: queue.Queue, len(queue.Queue), queue.Queue[-1].Meta.x.
type Queue struct {
	Queue []*detect.Event
	// L is how many events the bucket keeps; it keeps one more at overflow
	// (the one that made it overflow). -1 is unbounded.
	L int
}

// add keeps e, dropping the oldest event when the queue is full; drop
// releases the events the queue lets go.
func (q *Queue) add(e *detect.Event, drop func(*detect.Event)) {
	e.Hold()
	if q.L >= 0 && len(q.Queue) > q.L {
		old := len(q.Queue) - q.L
		for _, o := range q.Queue[:old] {
			drop(o)
		}
		// Shift in place so a long-lived bucket reuses its array.
		n := copy(q.Queue, q.Queue[old:])
		clear(q.Queue[n:])
		q.Queue = q.Queue[:n]
	}
	q.Queue = append(q.Queue, e)
}

func (q *Queue) reset(drop func(*detect.Event)) {
	for _, o := range q.Queue {
		drop(o)
	}
	clear(q.Queue)
	q.Queue = q.Queue[:0]
}

// Leaky is the bucket state conditions and overflow filters see as leaky,
// with CrowdSec's field names.
type Leaky struct {
	Name        string
	Mapkey      string
	Capacity    int
	Total_count int //nolint:revive // CrowdSec's name, used by hub expressions
	First_ts    time.Time
	Last_ts     time.Time
	Ovflw_ts    time.Time
}

// bucket is one (scenario, groupby value) partition.
type bucket struct {
	sc  *scenario
	key string

	live   bool // holds poured events; false for a blackhole-only record
	tabIdx int  // index in its table's list, for sampling eviction victims
	// credit is the bucket's free room in leak time: one event costs one
	// leakspeed. Integer nanoseconds, because float tokens drifted: five
	// events one second apart and a sixth six seconds later (10s
	// leakspeed) left 0.9999999999999999 of a token and overflowed.
	credit time.Duration
	leakAt time.Time // when credit was last brought up to date
	queue  Queue
	leaky  Leaky
	seen   map[string]struct{} // distinct values poured since the bucket began
	guill  []bool              // bayesian guillotines that fired
	readAt time.Time           // ReadAt of the last poured line

	// blackholeUntil hides overflows of this partition until then.
	blackholeUntil time.Time

	deadline time.Time // heap key
	heapIdx  int
}

// liveDeadline is when a live bucket ends on its own: underflow for leaky,
// conditional and bayesian buckets, the timed overflow for counters.
func (b *bucket) liveDeadline() time.Time {
	if b.sc.kind == kindCounter {
		return b.leaky.First_ts.Add(b.sc.lifetime)
	}
	return b.leaky.Last_ts.Add(b.sc.lifetime)
}

// begin makes an empty bucket ready for its first event.
func (b *bucket) begin(t time.Time) {
	b.live = true
	b.credit = b.sc.room
	b.leakAt = t
	b.queue.L = b.sc.qsize
	b.leaky = Leaky{Name: b.sc.spec.Name, Mapkey: b.key, Capacity: b.sc.spec.Capacity}
	if b.sc.distinct != nil {
		if b.seen == nil {
			b.seen = map[string]struct{}{}
		} else {
			clear(b.seen)
		}
	}
	if len(b.sc.bayes) > 0 {
		b.guill = make([]bool, len(b.sc.bayes))
	}
}

// end drops the bucket's events; the blackhole record stays.
func (b *bucket) end(drop func(*detect.Event)) {
	b.live = false
	b.queue.reset(drop)
	b.seen = nil
	b.guill = nil
	b.leaky = Leaky{}
}

// level is how full a live leaky bucket is at t, in leak time (capacity
// events make the room); how near it is to overflowing.
func (b *bucket) level(t time.Time) time.Duration {
	c := b.credit
	if d := t.Sub(b.leakAt); d > 0 {
		c = min(c+min(d, b.sc.room), b.sc.room)
	}
	return b.sc.room - c
}

// allow takes one event's room at t; false means the bucket overflows. Room
// comes back at one event per leakspeed up to the capacity: the token-bucket
// view of a leaky bucket, as CrowdSec's rate limiter computes it.
func (b *bucket) allow(t time.Time) bool {
	if d := t.Sub(b.leakAt); d > 0 {
		b.credit = min(b.credit+min(d, b.sc.room), b.sc.room)
	}
	// An event older than the last leak moves the leak clock back, so
	// time that comes again leaks again: CrowdSec's rate limiter does so
	// on a replay of out-of-order logs.
	b.leakAt = t
	if b.credit >= b.sc.leakspeed {
		b.credit -= b.sc.leakspeed
		return true
	}
	return false
}

// bucketHeap orders buckets by deadline: the timer for the whole set.
type bucketHeap []*bucket

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h bucketHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *bucketHeap) Push(x any) {
	b := x.(*bucket)
	b.heapIdx = len(*h)
	*h = append(*h, b)
}
func (h *bucketHeap) Pop() any {
	old := *h
	n := len(old)
	b := old[n-1]
	old[n-1] = nil
	b.heapIdx = -1
	*h = old[:n-1]
	return b
}
