package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// maxGroup bounds how many inserts one statement carries.
const maxGroup = 256

// group coalesces the inserts callers make at once into one statement (a
// group commit). Every decision insert takes the sequence row's lock, so
// concurrent inserts would otherwise queue on it one commit at a time:
// eight goroutines stored fewer alerts a second than one. One caller at a
// time, the leader, sends what is queued; when it is done it hands the
// lead to the first caller still queued, so no caller flushes for others
// longer than its own round.
type group struct {
	mu    sync.Mutex
	queue []*pending
	busy  bool
	stats groupStats
}

// groupStats count what the group commit did (see InsertStats).
type groupStats struct {
	statements, inserts, alerts, decisions, retried, nanos atomic.Int64
}

// InsertStats are the figures of a Store's inserts since Open: how many
// statements (each its own transaction) carried how many callers'
// inserts, alerts and decisions, and how long they took from send to
// answer. Inserts per statement is the group commit's gathering; a
// retried group (one whose statement failed, each insert then sent
// alone) would show every insert as a statement of its own.
type InsertStats struct {
	Statements, Inserts, Alerts, Decisions int64
	// Retried is the grouped statements that failed and were retried
	// one insert at a time.
	Retried int64
	Time    time.Duration
}

// InsertStats returns the Store's insert figures.
func (s *Store) InsertStats() InsertStats {
	g := &s.group.stats
	return InsertStats{
		Statements: g.statements.Load(), Inserts: g.inserts.Load(), Alerts: g.alerts.Load(),
		Decisions: g.decisions.Load(), Retried: g.retried.Load(), Time: time.Duration(g.nanos.Load()),
	}
}

// timedExec is exec, counted in the group's figures.
func (s *Store) timedExec(ctx context.Context, c *columns, inserts int, now time.Time) ([]int64, error) {
	t0 := time.Now()
	_, ids, err := s.exec(ctx, c, now)
	g := &s.group.stats
	g.nanos.Add(int64(time.Since(t0)))
	g.statements.Add(1)
	if err == nil {
		g.inserts.Add(int64(inserts))
		g.alerts.Add(int64(len(c.scenario)))
		g.decisions.Add(int64(len(c.id)))
	}
	return ids, err
}

// pending is one caller's insert.
type pending struct {
	c   *columns
	ids []int64
	err error
	// done closes when the insert ended (ids, err set); lead when this
	// caller is to flush the queue.
	done, lead chan struct{}
}

// insert stores c, grouped with whatever other callers insert meanwhile,
// and returns its alerts' IDs. Once queued an insert runs to its end
// whatever happens to ctx, bounded by a timeout: the kernel may already
// hold its bans, and other callers' rows share the statement.
func (s *Store) insert(ctx context.Context, c *columns) ([]int64, error) {
	p := &pending{c: c, done: make(chan struct{}), lead: make(chan struct{})}
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, p)
	leader := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !leader {
		select {
		case <-p.done:
			return p.ids, p.err
		case <-p.lead:
		}
	}
	// p is at the head of the queue: a leader is always the oldest.
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	take := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	s.flush(context.WithoutCancel(ctx), take)
	g.mu.Lock()
	if len(g.queue) > 0 {
		close(g.queue[0].lead)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	return p.ids, p.err
}

// flush stores the inserts of take in one statement. If it fails and
// holds several, each is tried alone, so one caller's bad row (an ID
// another replica took) fails that caller only.
func (s *Store) flush(ctx context.Context, take []*pending) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := time.Now()
	defer func() {
		for _, p := range take {
			close(p.done)
		}
	}()
	if len(take) == 1 {
		take[0].ids, take[0].err = s.timedExec(ctx, take[0].c, 1, now)
		return
	}
	var all columns
	for _, p := range take {
		all.merge(p.c)
	}
	ids, err := s.timedExec(ctx, &all, len(take), now)
	if err != nil {
		s.group.stats.retried.Add(1)
		for _, p := range take {
			p.ids, p.err = s.timedExec(ctx, p.c, 1, now)
		}
		return
	}
	for _, p := range take {
		n := len(p.c.scenario)
		p.ids, ids = ids[:n:n], ids[n:]
	}
}

// merge appends o's alerts and decisions, renumbering the decisions'
// alert ordinals after the alerts c already holds.
func (c *columns) merge(o *columns) {
	base := int64(len(c.scenario))
	c.scenario = append(c.scenario, o.scenario...)
	c.scope = append(c.scope, o.scope...)
	c.value = append(c.value, o.value...)
	c.data = append(c.data, o.data...)
	c.events = append(c.events, o.events...)
	c.simulated = append(c.simulated, o.simulated...)
	for _, a := range o.aord {
		if a != 0 {
			a += base
		}
		c.aord = append(c.aord, a)
	}
	c.id = append(c.id, o.id...)
	c.dvalue = append(c.dvalue, o.dvalue...)
	c.dscope = append(c.dscope, o.dscope...)
	c.start = append(c.start, o.start...)
	c.end = append(c.end, o.end...)
	c.typ = append(c.typ, o.typ...)
	c.origin = append(c.origin, o.origin...)
	c.dscenario = append(c.dscenario, o.dscenario...)
	c.reason = append(c.reason, o.reason...)
	c.dsimulated = append(c.dsimulated, o.dsimulated...)
	c.until = append(c.until, o.until...)
	c.ports = append(c.ports, o.ports...)
	c.protocol = append(c.protocol, o.protocol...)
}
