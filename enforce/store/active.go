package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/internal/keytab"
	"github.com/moatsec/moat/internal/model"
)

// activeIndex answers, from memory, whether a value holds an active
// decision an alert of a scenario produced: a restarted daemon re-reads the
// log lines it had not acknowledged and raises their alerts again, and the
// decision service must recognise the attack it already banned. Only
// decisions born of alerts are kept (a blocklist of a million values adds
// nothing), keyed by a seeded hash of value and scenario; a collision (odds
// about 3e-8 at a million keys) can only skip a re-ban of a source that is
// banned for another scenario.
type activeIndex struct {
	seed maphash.Seed

	mu sync.RWMutex
	// until holds the latest expiry (ns, math.MaxInt64 for never) of the
	// active alert decisions of each key.
	until *keytab.Map[int64]
	// log, while a load reads the table, keeps what commits meanwhile.
	log     []activeChange
	loading bool
}

type activeChange struct {
	seq, key, until int64
	del             bool
}

func newActiveIndex() *activeIndex {
	return &activeIndex{seed: maphash.MakeSeed(), until: keytab.New[int64]()}
}

func (x *activeIndex) key(value, scenario string) uint64 {
	var h maphash.Hash
	h.SetSeed(x.seed)
	h.WriteString(value)
	h.WriteByte(0)
	h.WriteString(scenario)
	return h.Sum64()
}

func untilKey(until int64) int64 {
	if until == 0 {
		return math.MaxInt64
	}
	return until
}

func (x *activeIndex) set(m *keytab.Map[int64], key uint64, until int64, del bool) {
	if del {
		m.Delete(key)
		return
	}
	if u, _ := m.Get(key); until > u {
		m.Put(key, until)
	}
}

// change records alert decisions added (or deleted) by the commit at seq.
func (x *activeIndex) change(seq int64, ds []model.Decision, del bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, d := range ds {
		k, u := x.key(d.ValueString(), d.Scenario), untilKey(nanos(d.Until))
		x.set(x.until, k, u, del)
		if x.loading {
			x.log = append(x.log, activeChange{seq: seq, key: int64(k), until: u, del: del})
		}
	}
}

func (x *activeIndex) has(value, scenario string, now int64) bool {
	k := x.key(value, scenario)
	x.mu.RLock()
	defer x.mu.RUnlock()
	u, _ := x.until.Get(k)
	return u > now
}

// loadActive reads the index from the table; commits made while it reads
// are applied again afterwards, those past the sequence it read at.
func (s *Store) loadActive(ctx context.Context) error {
	x := s.active
	x.mu.Lock()
	x.loading, x.log = true, nil
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.loading, x.log = false, nil
		x.mu.Unlock()
	}()
	tx, err := s.idx.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("active index: %w", err)
	}
	defer tx.Rollback()
	var at int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&at); err != nil {
		return fmt.Errorf("active index: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT value, scenario, until FROM decisions WHERE alert_id IS NOT NULL AND deleted_at IS NULL AND (until = 0 OR until > ?)`, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("active index: %w", err)
	}
	defer rows.Close()
	m := keytab.New[int64]()
	var value, scenario string
	var until int64
	for rows.Next() {
		if err := rows.Scan(&value, &scenario, &until); err != nil {
			return fmt.Errorf("active index: %w", err)
		}
		x.set(m, x.key(value, scenario), untilKey(until), false)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("active index: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range x.log {
		if c.seq > at {
			x.set(m, uint64(c.key), c.until, c.del)
		}
	}
	x.until = m
	return nil
}

// loadIndexes fills the in-memory indexes in the background of Open: with
// a million decisions they take a second to read, and a start must not
// hold the first ban that long. Until they are in, their questions go to
// SQLite (see CountDecisions and HasActive).
func (s *Store) loadIndexes(ctx context.Context) {
	defer close(s.indexed)
	err := s.rebuildCounts(ctx, s.idx)
	if err == nil {
		err = s.loadActive(ctx)
	}
	if err != nil {
		s.indexErr = err
		return
	}
	s.indexOK.Store(true)
}

// indexesReady reports whether the in-memory indexes answer.
func (s *Store) indexesReady() bool { return s.indexOK.Load() }

// WaitIndexed waits until the in-memory indexes are loaded and returns the
// load's error, if any (the store then keeps answering from SQLite).
func (s *Store) WaitIndexed(ctx context.Context) error {
	select {
	case <-s.indexed:
		return s.indexErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HasActive reports whether value holds an active decision that an alert
// of scenario produced.
func (s *Store) HasActive(ctx context.Context, value, scenario string, now time.Time) (bool, error) {
	if s.indexesReady() {
		return s.active.has(value, scenario, now.UnixNano()), nil
	}
	var one int
	err := s.idx.QueryRowContext(ctx, `SELECT 1 FROM decisions WHERE value = ? AND scenario = ? AND alert_id IS NOT NULL AND deleted_at IS NULL AND (until = 0 OR until > ?) LIMIT 1`,
		value, scenario, now.UnixNano()).Scan(&one)
	switch {
	case err == sql.ErrNoRows:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("active decision of %s for %s: %w", value, scenario, err)
	}
	return true, nil
}

// countFromTable is CountDecisions before the count index is loaded.
func (s *Store) countFromTable(ctx context.Context, value string, since time.Time) (int, error) {
	var n int
	if err := s.idx.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE value = ? AND created_at >= ?`, value, nanos(since)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count decisions on %s: %w", value, err)
	}
	return n, nil
}

// ActivePages calls fn with the decisions active at now, in ID order, at
// most size (0 means 4096) at a time: the reconciler's load at start, read
// page by page so that no snapshot of a million rows is held and the
// first pages reach the kernel while the rest are read. fn must not keep
// the slice.
func (s *Store) ActivePages(ctx context.Context, now time.Time, size int, fn func([]model.Decision) error) error {
	if size <= 0 {
		size = 4096
	}
	// The unary + keeps SQLite walking the table in rowid order.
	const q = `SELECT ` + recordCols + ` FROM decisions WHERE id > ? AND +deleted_at IS NULL AND (+until = 0 OR +until > ?) ORDER BY id LIMIT ?`
	page := make([]Record, 0, size)
	ds := make([]model.Decision, 0, size)
	var after int64
	for {
		var err error
		page, _, err = s.readPage(ctx, page[:0], scanFull, q, after, now.UnixNano(), size)
		if err != nil {
			return fmt.Errorf("active decisions: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		ds = ds[:0]
		for _, r := range page {
			ds = append(ds, r.Decision)
		}
		if err := fn(ds); err != nil {
			return err
		}
		if len(page) < size {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
