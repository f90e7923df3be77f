package api

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// fleetFeed reads each delta of the fleet streams once for all the
// streams at the same position: a thousand agents woken by one commit
// made a thousand identical store reads, and pushes queued behind them.
type fleetFeed struct {
	mu      sync.RWMutex
	entries map[int64]*feedEntry // by the sequence the delta starts after
}

// feedEntry is one shared read of the changes after a sequence.
type feedEntry struct {
	// gen is the Changes generation when the read began: the read holds
	// every write notified up to it.
	gen uint64
	// began bounds how long the read serves streams woken by their poll
	// rather than by a Notify: writes no Notify announced (see fleetPoll)
	// reach them within a poll.
	began time.Time
	done  chan struct{}
	cur   int64
	err   error
	// lines is the events read, encoded once for every stream as NDJSON
	// lines, followed by the checkpoint line up to cur (from evEnd on):
	// each stream writes the same bytes (encoding them per stream was as
	// much of the server's CPU as the writes), in one write.
	lines []byte
	evEnd int
}

// The reads kept: a stream behind the others (its agent slower to read)
// follows the chain of reads they made, each starting where the previous
// one ended, rather than reading from its own position: a thousand
// streams a few wakes apart made a store read each per wake, and the
// pushes waited for pooled connections behind them. maxFeedEntries and
// feedKeep bound the chain (a wake per fleetWakeEvery at most).
const (
	maxFeedEntries = 512
	feedKeep       = 5 * time.Second
)

// sharedRead returns the changes after seq as read at generation gen or
// later, reading them unless another stream did or is doing so; or, with
// stale, an earlier read that still moves the stream forward: the caller
// sends it and asks again from where it ends.
func (s *Server) sharedRead(ctx context.Context, seq int64, gen uint64) (e *feedEntry, stale bool, err error) {
	f := &s.feed
	// Most streams of a wake find the read begun: under the read lock,
	// so the thousand streams a wake sets off do not queue on each other.
	f.mu.RLock()
	e = f.entries[seq]
	f.mu.RUnlock()
	if !e.fresh(gen) && !e.moves(seq) {
		f.mu.Lock()
		// Another stream may have begun it meanwhile.
		if e = f.entries[seq]; !e.fresh(gen) && !e.moves(seq) {
			e = s.beginRead(seq)
			f.mu.Unlock()
			s.read(ctx, e, seq)
			return e, false, nil
		}
		f.mu.Unlock()
	}
	if e.fresh(gen) {
		select {
		case <-e.done:
			return e, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	return e, true, nil
}

// fresh reports whether e serves a stream woken at generation gen: it
// began at gen or later, and recently enough for a stream woken by its
// poll rather than by a Notify.
func (e *feedEntry) fresh(gen uint64) bool {
	return e != nil && e.gen >= gen && time.Since(e.began) < fleetPoll/2
}

// moves reports whether e, ended, still moves a stream at seq forward.
func (e *feedEntry) moves(seq int64) bool {
	return e != nil && e.settled() && e.err == nil && e.cur > seq
}

// beginRead records a read of the changes after seq, begun now; the
// caller holds s.feed.mu.
func (s *Server) beginRead(seq int64) *feedEntry {
	f := &s.feed
	if f.entries == nil {
		f.entries = map[int64]*feedEntry{}
	}
	if len(f.entries) >= maxFeedEntries {
		for k, old := range f.entries {
			if time.Since(old.began) > feedKeep {
				delete(f.entries, k)
			}
		}
		if len(f.entries) >= maxFeedEntries {
			f.entries = map[int64]*feedEntry{}
		}
	}
	e := &feedEntry{gen: s.Changes.current(), began: time.Now(), done: make(chan struct{})}
	f.entries[seq] = e
	return e
}

// read makes the read e records, for every stream waiting on it.
func (s *Server) read(ctx context.Context, e *feedEntry, seq int64) {
	f := &s.feed
	// Read for every stream waiting on it: not ended by this stream's
	// agent going away.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultWriteTimeout)
	defer cancel()
	at := s.Now()
	e.cur, e.err = s.st.Stream(rctx, seq, false, at, 0, func(c store.Change, recs []store.Record) error {
		if ev := fleetEventOf(c, recs, at); len(ev.Decisions) > 0 {
			return appendLine(&e.lines, ev)
		}
		return nil
	})
	if e.err == nil {
		e.evEnd = len(e.lines)
		e.err = appendLine(&e.lines, FleetEvent{Kind: FleetCheckpoint, Seq: e.cur, At: at})
	}
	close(e.done)
	if e.err != nil {
		// Not kept: the next stream to ask reads again.
		f.mu.Lock()
		if f.entries[seq] == e {
			delete(f.entries, seq)
		}
		f.mu.Unlock()
	}
}

// settled reports whether the read ended.
func (e *feedEntry) settled() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// fleetSharedDelta is fleetDelta for a stream that is up to date and was
// woken at generation gen: the read is shared (see fleetFeed). again
// says the stream was sent a read older than gen and is to ask again at
// once.
func (s *Server) fleetSharedDelta(ctx context.Context, fw *fleetWriter, seq int64, gen uint64) (next int64, sent, again bool, err error) {
	e, stale, err := s.sharedRead(ctx, seq, gen)
	if err != nil {
		return seq, false, false, err
	}
	if e.err != nil {
		return seq, false, false, e.err
	}
	if e.cur < seq || (e.cur == seq && e.evEnd == 0) {
		// The store behind the agent, or nothing new: as any delta.
		next, sent, err = s.fleetCheckpoint(ctx, fw, seq, e.cur, false, false, s.Now())
		return next, sent, false, err
	}
	if err := fw.sendRaw(e.lines); err != nil {
		return seq, e.evEnd > 0, false, err
	}
	return e.cur, true, stale, nil
}

// appendLine appends ev to b as a stream line, as fleetWriter.send
// encodes it.
func appendLine(b *[]byte, ev FleetEvent) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	*b = append(append(*b, line...), '\n')
	return nil
}
