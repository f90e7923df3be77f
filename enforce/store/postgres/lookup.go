package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxLookup bounds how many point reads one coalesced query carries.
const maxLookup = 512

// lookups coalesces the point reads concurrent callers make at once into
// one query per kind, as group does for inserts: a fleet server checks
// every pushed alert for a duplicate and counts its ban history before
// deciding, and with one query per alert those reads, not the inserts,
// were what PostgreSQL spent its CPU on (three transactions per alert).
type lookups[K, V any] struct {
	mu    sync.Mutex
	queue []*lookup[K, V]
	busy  bool
}

// lookup is one caller's read.
type lookup[K, V any] struct {
	key K
	val V
	err error
	// done closes when val and err are set; lead when this caller is to
	// run the queue.
	done, lead chan struct{}
}

// get returns run's answer for key, read in one query with the keys other
// callers ask meanwhile. As for inserts, the oldest caller queued leads:
// it runs one query for what is queued, then hands the lead on, so no
// caller reads for others longer than its own round. A queued read runs
// to its end whatever happens to ctx (others' keys share it), bounded by
// a timeout.
func (l *lookups[K, V]) get(ctx context.Context, key K, run func(context.Context, []K) ([]V, error)) (V, error) {
	p := &lookup[K, V]{key: key, done: make(chan struct{}), lead: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, p)
	leader := !l.busy
	l.busy = true
	l.mu.Unlock()
	if !leader {
		select {
		case <-p.done:
			return p.val, p.err
		case <-p.lead:
		}
	}
	l.mu.Lock()
	n := min(len(l.queue), maxLookup)
	take := l.queue[:n:n]
	l.queue = l.queue[n:]
	l.mu.Unlock()
	l.run(context.WithoutCancel(ctx), take, run)
	l.mu.Lock()
	if len(l.queue) > 0 {
		close(l.queue[0].lead)
	} else {
		l.busy = false
	}
	l.mu.Unlock()
	return p.val, p.err
}

func (l *lookups[K, V]) run(ctx context.Context, take []*lookup[K, V], run func(context.Context, []K) ([]V, error)) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	defer func() {
		for _, p := range take {
			close(p.done)
		}
	}()
	keys := make([]K, len(take))
	for i, p := range take {
		keys[i] = p.key
	}
	vals, err := run(ctx, keys)
	if err == nil && len(vals) != len(keys) {
		err = fmt.Errorf("%d answers for %d keys", len(vals), len(keys))
	}
	for i, p := range take {
		if err != nil {
			p.err = err
			continue
		}
		p.val = vals[i]
	}
}

// activeKey is a HasActive question.
type activeKey struct {
	value, scenario string
	now             int64
}

// countKey is a CountDecisions question.
type countKey struct {
	value string
	since int64
}

// The coalesced forms of HasActive and CountDecisions: one row with the
// answers in the keys' order. Each key must be answered by its own lookup
// in decisions_value, but the planner, costing a generic plan, would walk
// a partial index instead (decisions_alert for "alert_id IS NOT NULL",
// decisions_until for "deleted_at IS NULL" and the until bounds) through
// every active ban for each key: a coalesced duplicate check of 200
// alerts took 30 to 200 ms. The conditions other than the value are
// written in forms no partial index predicate matches (alert IDs start
// at 1, a deletion time is never 0), which leaves the value index.
const (
	hasActiveMany = `SELECT coalesce(array_agg((SELECT EXISTS (SELECT 1 FROM decisions d WHERE d.value = k.value AND d.scenario = k.scenario AND coalesce(d.alert_id, 0) <> 0 AND coalesce(d.deleted_at, 0) = 0 AND (d.until = 0 OR d.until > k.now))) ORDER BY k.ord), '{}')
		FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS k(value, scenario, now, ord)`
	countMany = `SELECT coalesce(array_agg((SELECT count(*) FROM decisions d WHERE d.value = k.value AND d.created_at >= k.since) ORDER BY k.ord), '{}')
		FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS k(value, since, ord)`
)

func (s *Store) hasActiveMany(ctx context.Context, keys []activeKey) ([]bool, error) {
	values, scenarios, nows := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		values[i], scenarios[i], nows[i] = k.value, k.scenario, k.now
	}
	var out []bool
	err := s.pool.QueryRow(ctx, hasActiveMany, values, scenarios, nows).Scan(&out)
	return out, err
}

func (s *Store) countMany(ctx context.Context, keys []countKey) ([]int64, error) {
	values, since := make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		values[i], since[i] = k.value, k.since
	}
	var out []int64
	err := s.pool.QueryRow(ctx, countMany, values, since).Scan(&out)
	return out, err
}
