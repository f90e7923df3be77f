package acquire

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/moatsec/moat/detect"
)

// Option changes how New builds a source.
type Option func(*options)

type options struct {
	acks bool
	log  *slog.Logger // for what a command source's program writes to stderr
}

// WithAcks makes a file, journal or docker source save only positions its
// consumer acknowledged with detect.Line.Pos.Ack, instead of positions of
// lines it sent. Only a consumer that acknowledges every line it finished
// (ones that raised nothing too) may ask for it: without acknowledgements
// the source never saves past where it started.
func WithAcks() Option { return func(o *options) { o.acks = true } }

// WithLogger gives a command source a logger for what its program writes
// to stderr (bounded in line length and rate). The other sources never
// log; without it the lines are only counted.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Checkpointer is implemented by sources that keep a position. Checkpoint
// writes the newest position now: the newest acknowledged one under
// WithAcks. Stream saves on its own while it runs and when it returns; a
// consumer that acknowledges lines after Stream returned (its pipeline
// draining at shutdown) calls Checkpoint once it is done, so those
// acknowledgements are kept.
type Checkpointer interface {
	Checkpoint() error
}

var (
	_ Checkpointer = (*fileSource)(nil)
	_ Checkpointer = (*journalSource)(nil)
	_ detect.Acker = (*fileSource)(nil)
	_ detect.Acker = (*journalSource)(nil)
)

// AckSaveLines is how many newly acknowledged lines make a source save
// before its StateInterval is up: after a crash, at most this many lines
// (or StateInterval's worth, whichever is fewer) that were acknowledged
// are read again.
const AckSaveLines = 10000

// ackLog maps the sequence numbers on sent lines back to the positions a
// source persists (P), for a source whose consumer acknowledges lines.
// The sending goroutine calls sent; any goroutine calls ack; the saver
// calls take.
type ackLog[P any] struct {
	acked atomic.Uint64 // highest acknowledged sequence number
	taken atomic.Uint64 // sequence number of the last entry take returned
	kick  chan struct{} // wakes the saver after AckSaveLines
	last  uint64        // last sequence number handed out (sender only)

	mu sync.Mutex
	q  []ackEntry[P] // sent and not yet taken, in sequence order
}

type ackEntry[P any] struct {
	seq uint64
	pos P
}

func newAckLog[P any]() *ackLog[P] { return &ackLog[P]{kick: make(chan struct{}, 1)} }

// next is the sequence number of the next line to send.
func (a *ackLog[P]) next() uint64 { return a.last + 1 }

// sent records that line seq (from next) was delivered and ends at p.
func (a *ackLog[P]) sent(seq uint64, p P) {
	a.last = seq
	a.mu.Lock()
	a.q = append(a.q, ackEntry[P]{seq, p})
	a.mu.Unlock()
}

// ack records that every line up to seq is handled.
func (a *ackLog[P]) ack(seq uint64) {
	for {
		cur := a.acked.Load()
		if seq <= cur {
			return
		}
		if a.acked.CompareAndSwap(cur, seq) {
			break
		}
	}
	if seq-a.taken.Load() >= AckSaveLines {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// take removes the entries acknowledged so far and calls apply on each,
// oldest first; it returns how many there were.
func (a *ackLog[P]) take(apply func(P)) int {
	upto := a.acked.Load()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(a.q) && a.q[n].seq <= upto {
		apply(a.q[n].pos)
		n++
	}
	if n > 0 {
		a.taken.Store(a.q[n-1].seq)
		// Keep the array: the next interval sends about as many lines.
		// What is left (sent, not acknowledged) is moved to the front.
		m := copy(a.q, a.q[n:])
		clear(a.q[m:])
		a.q = a.q[:m]
	}
	return n
}
