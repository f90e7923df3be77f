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
	"time"

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
