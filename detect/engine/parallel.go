package engine

import (
	"context"
	"slices"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/internal/model"
)

// Workers returns how many parse workers Run may use when asked for want:
// want itself (at least 1), or 1 when a parser keeps state from one event
// to the next (a stash), which parsing events side by side would reorder.
func (e *Engine) Workers(want int) int {
	if want < 1 || e.pipe.CrossEvent() {
		return 1
	}
	return want
}

// batchLines is how many lines a worker parses per hand-off: enough to
// make the channel operations negligible, few enough that the events of
// the batches in flight, which workers reuse as they come back, stay in
// cache. In interleaved replays with 2 workers, 64 beat 256 by about
// 10 % on nginx and tied on sshd, where 128 beat 64.
const batchLines = 128

// lineState is what parsing made of a line, for the counters and buckets.
type lineState uint8

const (
	lineSkipped lineState = iota // not to be processed (l.Process false)
	lineUnparsed
	lineWhitelisted
	linePoured
)

// batch is a run of consecutive lines and, once a worker parsed them,
// their events. It travels dispatcher -> worker -> consumer and back, and
// carries events the consumer recycled to the worker that reuses them.
type batch struct {
	lines []detect.Line
	evts  []*detect.Event
	state []lineState
	// matches are the scenario matches of the poured lines, when workers
	// match (matched).
	matches    []scenario.Matches
	matched    bool
	free       []*detect.Event
	freeParsed []map[string]string
}

// Run processes every line of in, in order, and calls emit with each
// line and the alerts it caused, in input order. Up to workers goroutines
// parse (see Workers); buckets, postoverflows and emit run on the calling
// goroutine in input order, so the alerts, their order and the counters
// are those of Process called line by line. Run returns when in is closed
// or ctx is done (ctx.Err() then), having processed every line it took
// from in; Flush or Tick stay the caller's.
func (e *Engine) Run(ctx context.Context, in <-chan detect.Line, workers int, emit func(detect.Line, []model.Alert)) error {
	return e.run(ctx, in, runOpts{workers: workers, flushAfter: replayFlushAfter, emit: emit})
}

// RunLive is Run for lines as they are written: a line waits for no
// company before a worker parses it, and every tick of tick the calling
// goroutine, between two lines, calls Tick and hands its alerts to
// onTick, so that time-driven overflows and the buckets never race.
func (e *Engine) RunLive(ctx context.Context, in <-chan detect.Line, workers int, tick <-chan time.Time,
	emit func(detect.Line, []model.Alert), onTick func(time.Time, []model.Alert)) error {
	return e.run(ctx, in, runOpts{workers: workers, tick: tick, emit: emit, onTick: onTick})
}

type runOpts struct {
	workers    int
	flushAfter time.Duration
	tick       <-chan time.Time
	emit       func(detect.Line, []model.Alert)
	onTick     func(time.Time, []model.Alert)
}

func (e *Engine) run(ctx context.Context, in <-chan detect.Line, o runOpts) error {
	n := e.Workers(o.workers)
	if n == 1 {
		return e.runSerial(ctx, in, o)
	}
	work := make([]chan *batch, n)
	done := make([]chan *batch, n)
	for i := range work {
		work[i] = make(chan *batch, 2)
		done[i] = make(chan *batch, 2)
	}
	// pool hands consumed batches, with recycled events, back to the
	// dispatcher; its size bounds the batches in flight.
	pool := make(chan *batch, 4*n)
	for range cap(pool) {
		pool <- &batch{}
	}
	for i := range n {
		w := &parseWorker{pipe: e.pipe.Worker(), parsedFields: e.parsedFields, metaFields: e.metaFields}
		if e.set.MatchesAnywhere() {
			w.match = e.set.NewMatcher()
		}
		go func() {
			defer close(done[i])
			for b := range work[i] {
				w.parse(b)
				w.pipe.FlushCounts()
				done[i] <- b
			}
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- dispatch(ctx, in, pool, work, o.flushAfter) }()
	// Batch k went to worker k mod n, and each worker keeps its batches
	// in order: reading the workers in turn restores the input order.
	for k := 0; ; {
		select {
		case b, ok := <-done[k%n]:
			if !ok {
				return <-errc
			}
			e.consume(b, o.emit)
			pool <- b
			k++
		case now := <-o.tick:
			o.onTick(now, e.Tick(now))
		}
	}
}

// dispatch cuts in into batches for the workers in turn and closes their
// channels at the end. A batch leaves full, or once in has stayed empty
// for flushAfter (at once when 0): a replay's reader keeps batches full,
// and a live line waits at most that long for company.
func dispatch(ctx context.Context, in <-chan detect.Line, pool <-chan *batch, work []chan *batch, flushAfter time.Duration) error {
	defer func() {
		for _, w := range work {
			close(w)
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for k := 0; ; k++ {
		var b *batch
		select {
		case b = <-pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.lines = b.lines[:0]
		select {
		case l, ok := <-in:
			if !ok {
				return nil
			}
			b.lines = append(b.lines, l)
		case <-ctx.Done():
			return ctx.Err()
		}
		closed, armed := false, false
	fill:
		for len(b.lines) < batchLines {
			select {
			case l, ok := <-in:
				if !ok {
					closed = true
					break fill
				}
				b.lines = append(b.lines, l)
				continue
			default:
			}
			if flushAfter == 0 {
				break fill
			}
			if !armed {
				timer.Reset(flushAfter)
				armed = true
			}
			select {
			case l, ok := <-in:
				if !ok {
					closed = true
					break fill
				}
				b.lines = append(b.lines, l)
			case <-timer.C:
				armed = false
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		if armed {
			timer.Stop()
		}
		work[k%len(work)] <- b
		if closed {
			return nil
		}
	}
}

// replayFlushAfter bounds how long a replayed line waits for a batch to
// fill, should the reader fall behind the workers.
const replayFlushAfter = time.Millisecond

// runSerial is run with one goroutine: Process line by line.
func (e *Engine) runSerial(ctx context.Context, in <-chan detect.Line, o runOpts) error {
	for {
		select {
		case l, ok := <-in:
			if !ok {
				return nil
			}
			o.emit(l, e.Process(l))
		case now := <-o.tick:
			o.onTick(now, e.Tick(now))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// parseWorker parses batches with its own pipeline scratch and its own
// events to reuse.
type parseWorker struct {
	pipe *parse.Pipeline
	// match, when set, also matches the poured events to scenarios.
	match                    *scenario.Matcher
	parsedFields, metaFields int
	free                     []*detect.Event
	freeParsed               []map[string]string
}

// parse is the parse half of Engine.process for every line of b.
func (w *parseWorker) parse(b *batch) {
	if len(w.free) < maxFree {
		w.free = append(w.free, b.free...)
	}
	if len(w.freeParsed) < maxFree {
		w.freeParsed = append(w.freeParsed, b.freeParsed...)
	}
	clear(b.free)
	clear(b.freeParsed)
	b.free, b.freeParsed = b.free[:0], b.freeParsed[:0]
	b.evts = slices.Grow(b.evts[:0], len(b.lines))[:len(b.lines)]
	b.state = slices.Grow(b.state[:0], len(b.lines))[:len(b.lines)]
	clear(b.state)
	b.matched = w.match != nil
	if b.matched {
		b.matches = slices.Grow(b.matches[:0], len(b.lines))[:len(b.lines)]
	}
	for i, l := range b.lines {
		if !l.Process {
			b.evts[i] = nil
			continue
		}
		evt, fresh := w.event(l)
		evt.Hold()
		if evt.Time.IsZero() {
			evt.Time = l.ReadAt
		}
		switch {
		case !w.pipe.Parse(evt):
			b.state[i] = lineUnparsed
		case evt.Whitelisted:
			b.state[i] = lineWhitelisted
		default:
			b.state[i] = linePoured
		}
		if fresh {
			// As Engine.learnSizes, per worker: only map capacities.
			w.parsedFields = min(max(w.parsedFields, len(evt.Parsed)), maxFieldsHint)
			w.metaFields = min(max(w.metaFields, len(evt.Meta)), maxFieldsHint)
		}
		if b.state[i] != linePoured {
			// No bucket will see it: the worker's own hold is the last,
			// and the event serves the next line while still in cache.
			evt.Release()
			w.free = append(w.free, evt)
			evt = nil
		} else if b.matched {
			w.match.Match(evt, &b.matches[i])
		}
		b.evts[i] = evt
	}
}

// event returns an event for l: a reused one when the consumer gave some
// back, else a new one (fresh).
func (w *parseWorker) event(l detect.Line) (*detect.Event, bool) {
	if n := len(w.free); n > 0 {
		evt := w.free[n-1]
		w.free[n-1] = nil
		w.free = w.free[:n-1]
		evt.Reuse(l)
		if evt.Parsed == nil {
			evt.Parsed = emptyParsed(&w.freeParsed, w.parsedFields)
		}
		return evt, false
	}
	return detect.NewEventSized(l, w.parsedFields, w.metaFields), true
}

// consume is the bucket half of Engine.process and Process for every
// line of a parsed batch, then hands the events no one holds back to the
// batch for a worker to reuse.
func (e *Engine) consume(b *batch, emit func(detect.Line, []model.Alert)) {
	// Counted per batch: scrapes read the counters, not each line.
	var unparsed, parsed, whitelisted, poured uint64
	for i, l := range b.lines {
		evt := b.evts[i]
		b.evts[i] = nil
		var ovs []Overflow
		switch b.state[i] {
		case lineSkipped:
			emit(l, nil)
			continue
		case lineUnparsed:
			// The worker kept the event (see parseWorker.parse).
			unparsed++
			emit(l, nil)
			continue
		case lineWhitelisted:
			parsed++
			whitelisted++
			emit(l, nil)
			continue
		case linePoured:
			parsed++
			poured++
			if b.matched {
				ovs = e.postprocess(e.set.PourMatchedOverflows(evt, &b.matches[i]))
			} else {
				ovs = e.postprocess(e.set.PourOverflows(evt))
			}
		}
		e.release(evt)
		emit(l, alertsOf(ovs))
	}
	e.lines.Add(uint64(len(b.lines)))
	e.unparsed.Add(unparsed)
	e.parsed.Add(parsed)
	e.whitelisted.Add(whitelisted)
	e.poured.Add(poured)
	// The events buckets released go back with the batch: one per line
	// at most, so no worker hoards them.
	k := min(len(e.free), len(b.lines))
	b.free = append(b.free, e.free[len(e.free)-k:]...)
	clear(e.free[len(e.free)-k:])
	e.free = e.free[:len(e.free)-k]
	k = min(len(e.freeParsed), len(b.lines))
	b.freeParsed = append(b.freeParsed, e.freeParsed[len(e.freeParsed)-k:]...)
	clear(e.freeParsed[len(e.freeParsed)-k:])
	e.freeParsed = e.freeParsed[:len(e.freeParsed)-k]
}
