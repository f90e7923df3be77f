package enforce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// loadChunk is how many entries a load hands the backends at a time: they
// write one chunk to the kernel while the next is being built.
const loadChunk = 1 << 16

// load is batch for the first batch into an empty desired set (a first
// start, a bulk import): the diff is the desired set itself, so it is
// streamed to the backends in chunks as it is built, and building the
// desired set overlaps with the kernel writes instead of preceding them.
func (r *Reconciler) load(ctx context.Context, reqs []*request, now time.Time) {
	total := 0
	for _, req := range reqs {
		total += len(req.add)
	}
	r.desired = newDesiredSet()
	st := r.openStream(ctx)
	chunk := st.buffer(min(total, loadChunk))
	// Prefixes covered again after their first entry went out: the expiry
	// sent may no longer be the latest, so they are sent again at the end.
	var again map[pkey]struct{}
	errs := make([][]error, len(reqs))
	var applied []model.Decision
	for i, req := range reqs {
		for _, d := range req.add {
			p, err := r.prefixOf(d)
			var added, fresh bool
			if err == nil {
				added, fresh, err = r.addDecision(d, p, now)
			}
			if err != nil {
				errs[i] = append(errs[i], err)
				continue
			}
			switch {
			case fresh:
				chunk = append(chunk, Entry{Prefix: p, Expiry: stampOf(d.Until).time()})
				if len(chunk) == loadChunk {
					st.send(chunk)
					chunk = st.buffer(loadChunk)
				}
			case added:
				if again == nil {
					again = map[pkey]struct{}{}
				}
				again[keyOf(p)] = struct{}{}
			}
			if r.cfg.Applied != nil {
				applied = append(applied, d)
			}
		}
	}
	r.stats.entries.Store(int64(r.desired.len()))
	if len(chunk) > 0 {
		st.send(chunk)
	}
	// Apart from the last chunk, which may hold the same prefixes: a diff
	// names a prefix once.
	if len(again) > 0 {
		fix := make([]Entry, 0, len(again))
		for k := range again {
			c, _ := r.desired.get(k)
			fix = append(fix, Entry{Prefix: k.prefix(), Expiry: r.expiryOf(k, c).time()})
		}
		st.send(fix)
	}
	r.answer(reqs, errs, applied, r.closeStream(st))
}

// stream feeds each backend its own sequence of Apply calls, so the
// backends write side by side and while the reconciler works.
type stream struct {
	feeds []chan *streamChunk
	errs  []error
	wg    sync.WaitGroup
	start time.Time
	sent  bool
	// free holds chunks every backend is done with, for reuse: a cold
	// load's cost is mostly fresh memory.
	free chan []Entry
}

// streamChunk is one chunk and the number of backends still reading it.
type streamChunk struct {
	set     []Entry
	readers atomic.Int32
}

func (r *Reconciler) openStream(ctx context.Context) *stream {
	st := &stream{errs: make([]error, len(r.backends)), start: time.Now(), free: make(chan []Entry, 4)}
	for i, b := range r.backends {
		feed := make(chan *streamChunk, 2)
		st.feeds = append(st.feeds, feed)
		st.wg.Go(func() {
			// A failed chunk does not stop the next ones: the more of the
			// load the kernel holds, the less a verify pass must repair.
			for c := range feed {
				if err := b.Apply(ctx, Diff{Set: c.set}); err != nil && st.errs[i] == nil {
					st.errs[i] = fmt.Errorf("%s: %w", b.Name(), err)
				}
				if c.readers.Add(-1) == 0 {
					select {
					case st.free <- c.set[:0]:
					default:
					}
				}
			}
		})
	}
	return st
}

// buffer returns an empty chunk with room for n entries.
func (st *stream) buffer(n int) []Entry {
	select {
	case b := <-st.free:
		if cap(b) >= n {
			return b
		}
	default:
	}
	return make([]Entry, 0, n)
}

// send hands every backend the same entries; backends only read them. The
// caller gives up set.
func (st *stream) send(set []Entry) {
	st.sent = true
	c := &streamChunk{set: set}
	c.readers.Store(int32(len(st.feeds)))
	for _, f := range st.feeds {
		f <- c
	}
}

func (r *Reconciler) closeStream(st *stream) error {
	for _, f := range st.feeds {
		close(f)
	}
	st.wg.Wait()
	if !st.sent {
		return nil
	}
	return r.applied(st.start, errors.Join(st.errs...))
}
