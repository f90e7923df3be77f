package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// The fleet decision stream: GET /v1/fleet/decisions/stream?after=SEQ, for
// machines logged in (a bearer token from /v1/watchers/login). The answer
// is a long-lived NDJSON body of FleetEvent lines: the changes after SEQ
// (or, with SEQ 0 or a SEQ the store never reached, the whole active set),
// a checkpoint carrying the sequence they add up to, then each later
// change as soon as it is stored, each followed by its checkpoint, and a
// heartbeat when nothing changed for a while. A moat fleet agent keeps one
// open; a CrowdSec agent, which does not know it, gets a 404 from a server
// that is not moat and polls the bouncer stream instead.

// FleetStreamPath is the fleet decision stream's path.
const FleetStreamPath = "/v1/fleet/decisions/stream"

// Kinds of FleetEvent.
const (
	FleetNew        = "new"
	FleetDeleted    = "deleted"
	FleetCheckpoint = "checkpoint"
	FleetHeartbeat  = "heartbeat"
)

// FleetEvent is one line of the fleet decision stream.
type FleetEvent struct {
	Kind string `json:"kind"`
	// Seq, on a checkpoint or a heartbeat, is the sequence the agent is
	// up to once it applied every decision before it.
	Seq int64 `json:"seq,omitempty"`
	// Startup, on a checkpoint, says the decisions since the previous
	// checkpoint were the whole active set: the agent drops the fleet
	// decisions it holds that were not among them.
	Startup bool `json:"startup,omitempty"`
	// Decisions of a new or deleted event.
	Decisions []FleetDecision `json:"decisions,omitempty"`
	// At is the server's clock when the event was read from the store,
	// for the agent's propagation lag.
	At time.Time `json:"at"`
}

// FleetDecision is a decision as the fleet stream carries it: what an
// agent applies. The reason (the alert's message, the longest field), the
// scope (the value's form says it) and the origin (an agent holds fleet
// decisions under origin fleet, with a reason naming the server's ID) are
// left out: every stream carries every decision, and they were more than
// half of each line's bytes. An agent of an earlier version, which decodes
// them as Decision, finds them empty and never read them either.
type FleetDecision struct {
	ID        int64     `json:"id"`
	Value     string    `json:"value"`
	Type      string    `json:"type"`
	Scenario  string    `json:"scenario,omitempty"`
	Until     time.Time `json:"until,omitzero"`
	Simulated bool      `json:"simulated,omitempty"`
	// Forever marks a decision without expiry (no until).
	Forever bool `json:"forever,omitempty"`
	// Ports and Protocol scope the ban to a service (see Decision).
	Ports    string `json:"ports,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

func fleetDecisionOf(m model.Decision) FleetDecision {
	return FleetDecision{
		ID: m.ID, Value: m.ValueString(), Type: m.Type, Scenario: m.Scenario,
		Until: m.Until, Forever: m.Until.IsZero(), Simulated: m.Simulated,
		Ports: model.FormatPorts(m.Ports), Protocol: m.Protocol,
	}
}

// Defaults of the fleet stream: a zero field of the Server takes these.
const (
	DefaultMaxFleetStreams           = 1024
	DefaultMaxFleetStreamsPerMachine = 2
	DefaultFleetHeartbeat            = 10 * time.Second
	// fleetPoll is how often an idle stream reads the store's sequence
	// even when no write woke it: writes this process does not see (the
	// CLI on another replica sharing a PostgreSQL store) reach the agents
	// within it.
	fleetPoll = time.Second
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

// fleetState is the fleet streams' share of the server's limits.
type fleetState struct {
	mu      sync.Mutex
	streams int
	// per holds each machine's open streams, oldest first.
	per map[string][]*fleetSlot
}

// fleetSlot is one open stream; cancel ends it.
type fleetSlot struct{ cancel context.CancelFunc }

// acquireFleet takes a fleet stream slot, in total and for the machine.
// A machine at its own bound gets its oldest stream ended rather than the
// new one refused: an agent reconnects when its stream went silent, and
// the old one, to a peer gone without a word, would hold the slot until
// TCP gave up on it, minutes later. The returned context ends when the
// stream is so evicted.
func (s *Server) acquireFleet(ctx context.Context, machine string) (context.Context, func(), error) {
	maxAll, maxPer := s.MaxFleetStreams, s.MaxFleetStreamsPerMachine
	if maxAll <= 0 {
		maxAll = DefaultMaxFleetStreams
	}
	if maxPer <= 0 {
		maxPer = DefaultMaxFleetStreamsPerMachine
	}
	f := &s.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.per == nil {
		f.per = map[string][]*fleetSlot{}
	}
	mine := f.per[machine]
	if len(mine) >= maxPer {
		mine[0].cancel()
		f.per[machine] = mine[1:]
		f.streams--
	} else if f.streams >= maxAll {
		return nil, nil, &limitError{apiError{http.StatusTooManyRequests, fmt.Sprintf("too many fleet streams open (at most %d): retry later", maxAll)}}
	}
	ctx, cancel := context.WithCancel(ctx)
	slot := &fleetSlot{cancel: cancel}
	f.streams++
	f.per[machine] = append(f.per[machine], slot)
	return ctx, func() {
		cancel()
		f.mu.Lock()
		defer f.mu.Unlock()
		list := f.per[machine]
		for i, sl := range list {
			if sl == slot {
				f.per[machine] = append(list[:i:i], list[i+1:]...)
				f.streams--
				break
			}
		}
		if len(f.per[machine]) == 0 {
			delete(f.per, machine)
		}
	}, nil
}

// fleetWriter writes stream lines, each flushed under its own write
// deadline: an agent that stops reading is cut off after WriteTimeout.
type fleetWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	bw  *bufio.Writer
	enc *json.Encoder
	to  time.Duration
}

// sendRaw writes lines encoded already, shared with other streams, in
// one write to the connection: straight to the response, not copied
// through the stream's buffer, which is empty between events.
func (fw *fleetWriter) sendRaw(lines []byte) error {
	if err := fw.rc.SetWriteDeadline(time.Now().Add(fw.to)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := fw.bw.Flush(); err != nil {
		return err
	}
	if _, err := fw.w.Write(lines); err != nil {
		return err
	}
	return fw.rc.Flush()
}

func (fw *fleetWriter) send(ev FleetEvent) error {
	if err := fw.rc.SetWriteDeadline(time.Now().Add(fw.to)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := fw.enc.Encode(ev); err != nil {
		return err
	}
	// Flushed each line: an event waiting in a buffer is a ban late.
	if err := fw.bw.Flush(); err != nil {
		return err
	}
	return fw.rc.Flush()
}

// fleetStream is GET /v1/fleet/decisions/stream.
func (s *Server) fleetStream(w http.ResponseWriter, r *http.Request) error {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("after %q: want a sequence, 0 or more", v)
		}
		after = n
	}
	ctx, release, err := s.acquireFleet(r.Context(), machineOf(r))
	if err != nil {
		return s.refuse(w, r, err)
	}
	defer release()
	rc := http.NewResponseController(w)
	// The server's read deadline covers the request, not a stream that
	// lasts hours: left armed, it would end the stream when it passes.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.svc.Expire(ctx); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if r.ProtoMajor == 1 {
		// Not chunked: the stream is delimited by the connection's end
		// (it never ends otherwise), and each wake is then one write to
		// the connection. Chunked, net/http wrote a chunk's header, the
		// first 4 KiB of the delta, its rest and the chunk's end in three
		// system calls (the agent woken for each): a thousand streams
		// spent half the server's CPU on them. An agent tells a cut
		// stream by its last line, which then lacks its newline and does
		// not decode.
		w.Header().Set("Transfer-Encoding", "identity")
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	to := s.WriteTimeout
	if to <= 0 {
		to = DefaultWriteTimeout
	}
	fw := &fleetWriter{w: w, rc: rc, bw: bw, enc: json.NewEncoder(bw), to: to}
	if err := s.fleetLoop(ctx, fw, after); err != nil && ctx.Err() == nil {
		s.cutShort(r, err)
	}
	return nil
}

// fleetLoop sends the changes after seq, then waits for the next ones,
// until the agent goes away or a write fails.
func (s *Server) fleetLoop(ctx context.Context, fw *fleetWriter, seq int64) error {
	hb := s.FleetHeartbeat
	if hb <= 0 {
		hb = DefaultFleetHeartbeat
	}
	if s.Changes != nil {
		s.Changes.streams.Add(1)
		defer s.Changes.streams.Add(-1)
	}
	startup := seq == 0
	lastSent := time.Now()
	var lastWoken time.Time
	poll := time.NewTicker(min(fleetPoll, hb))
	defer poll.Stop()
	for first := true; ; first = false {
		// Taken before the read, so a write committed during it wakes
		// the next wait rather than being missed.
		var woken <-chan struct{}
		var gen uint64
		if s.Changes != nil {
			woken, gen = s.Changes.wait()
		}
		var next int64
		var sent, again bool
		var err error
		if first || s.Changes == nil {
			// A start or a catch-up may be long: read page by page.
			next, sent, err = s.fleetDelta(ctx, fw, seq, startup)
		} else {
			next, sent, again, err = s.fleetSharedDelta(ctx, fw, seq, gen)
		}
		if err != nil {
			return err
		}
		if sent || startup {
			lastSent = time.Now()
		} else if time.Since(lastSent) >= hb {
			if err := fw.send(FleetEvent{Kind: FleetHeartbeat, Seq: next, At: s.Now()}); err != nil {
				return err
			}
			lastSent = time.Now()
		}
		seq, startup = next, false
		if again {
			// Sent a read older than the wake: what came after it is
			// still to read, now.
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if !s.fleetWait(ctx, woken, poll.C, &lastWoken) {
			return nil
		}
	}
}

// fleetWait waits for the stream's next read: a wake, or its poll. A poll
// within fleetPoll of the last wake is skipped: the wakes' reads see
// every write, notified or not, and streams polling on their own read the
// store each at its own position, a thousand reads a second which, made
// between the wakes, split the streams' positions and with them the
// shared reads. It returns false when ctx ended.
func (s *Server) fleetWait(ctx context.Context, woken <-chan struct{}, poll <-chan time.Time, lastWoken *time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-woken:
			*lastWoken = time.Now()
			return true
		case <-poll:
			if s.Changes == nil || time.Since(*lastWoken) >= fleetPoll {
				return true
			}
		}
	}
}

// fleetDelta sends what changed after seq (everything active when startup)
// and its checkpoint, page by page: the store is read a page at a time and
// each page written after its rows are closed, so no store connection or
// snapshot waits on the agent. It returns the sequence sent up to, and
// whether anything was sent.
func (s *Server) fleetDelta(ctx context.Context, fw *fleetWriter, seq int64, startup bool) (int64, bool, error) {
	now := s.Now()
	var sent bool
	emit := func(c store.Change, recs []store.Record) error {
		ev := fleetEventOf(c, recs, now)
		if len(ev.Decisions) == 0 {
			return nil
		}
		sent = true
		return fw.send(ev)
	}
	cur, err := s.st.Stream(ctx, seq, startup, now, 0, emit)
	if err != nil {
		return seq, sent, err
	}
	return s.fleetCheckpoint(ctx, fw, seq, cur, startup, sent, now)
}

// fleetCheckpoint ends a delta from seq up to cur: the checkpoint, unless
// nothing changed, or a start over when the agent is ahead of the store.
func (s *Server) fleetCheckpoint(ctx context.Context, fw *fleetWriter, seq, cur int64, startup, sent bool, now time.Time) (int64, bool, error) {
	if cur < seq && !startup {
		// The agent is ahead of the store: a new store (or one restored
		// from an old backup). What it holds cannot be trusted as a
		// delta's base; it starts over.
		return s.fleetDelta(ctx, fw, 0, true)
	}
	if !sent && !startup && cur == seq {
		return cur, false, nil
	}
	if err := fw.send(FleetEvent{Kind: FleetCheckpoint, Seq: cur, Startup: startup, At: now}); err != nil {
		return seq, sent, err
	}
	return cur, true, nil
}

// fleetEventOf is a page of the store's stream as a fleet event.
func fleetEventOf(c store.Change, recs []store.Record, now time.Time) FleetEvent {
	ev := FleetEvent{Kind: FleetNew, At: now}
	if c == store.Deleted {
		ev.Kind = FleetDeleted
	}
	for _, rec := range recs {
		// Simulated decisions are the server's trial; agents enforce
		// none of them.
		if rec.Simulated && c == store.New {
			continue
		}
		ev.Decisions = append(ev.Decisions, fleetDecisionOf(rec.Decision))
	}
	return ev
}

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
