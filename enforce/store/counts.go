package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/moatsec/moat/enforce/internal/keytab"
)

// countIndex answers CountDecisions, the escalation question on the
// alert-to-kernel path, from memory. A query there went through cgo, and a
// goroutine coming back from cgo on a busy host can lose its CPU to every
// runnable API goroutine: under 2,000 bouncer connections the count alone
// took 10-100 ms. Here it takes a read lock and a map lookup.
//
// Values are keyed by a 64-bit seeded hash, and a value with one decision
// (nearly all of them: blocklists) costs one keytab slot of two words, so a
// million decisions take about 21 MB (28-35 MB in a Go map). A collision (odds about 3e-8 at a
// million values) can only lengthen a ban. The index mirrors the table:
// inserts add to it after their commit, and Prune rebuilds it.
type countIndex struct {
	seed maphash.Seed

	mu sync.RWMutex
	// one holds the creation time (ns) of values with one decision, many
	// those of values with more.
	one  *keytab.Map[int64]
	many map[uint64][]int64
	// pending, while a rebuild reads the table, logs what commits
	// meanwhile (nil otherwise).
	pending []countAdd
	// rebuilding is set while pending logs.
	rebuilding bool
}

type countAdd struct {
	key          uint64
	created, seq int64
}

func newCountIndex() *countIndex {
	return &countIndex{seed: maphash.MakeSeed(), one: keytab.New[int64](), many: map[uint64][]int64{}}
}

func (x *countIndex) key(value string) uint64 { return maphash.String(x.seed, value) }

// addTo adds one decision to one and many (x.mu held if they are x's).
func (x *countIndex) addTo(one *keytab.Map[int64], many map[uint64][]int64, key uint64, created int64) {
	if ts, ok := many[key]; ok {
		many[key] = append(ts, created)
		return
	}
	if t, ok := one.Get(key); ok {
		one.Delete(key)
		many[key] = []int64{t, created}
		return
	}
	one.Put(key, created)
}

// add records decisions on values committed at seq.
func (x *countIndex) add(seq, created int64, values []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, v := range values {
		k := x.key(v)
		x.addTo(x.one, x.many, k, created)
		if x.rebuilding {
			x.pending = append(x.pending, countAdd{k, created, seq})
		}
	}
}

// count counts the decisions on value created at or after since (ns).
func (x *countIndex) count(value string, since int64) int {
	k := x.key(value)
	x.mu.RLock()
	defer x.mu.RUnlock()
	if t, ok := x.one.Get(k); ok {
		if t >= since {
			return 1
		}
		return 0
	}
	n := 0
	for _, t := range x.many[k] {
		if t >= since {
			n++
		}
	}
	return n
}

// rebuildCounts reads the index afresh from the table (after Prune, so
// pruned decisions stop counting). Commits made while it reads are kept:
// those past the sequence it read at are applied again afterwards.
func (s *Store) rebuildCounts(ctx context.Context, db *sql.DB) error {
	x := s.counts
	x.mu.Lock()
	x.rebuilding, x.pending = true, nil
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.rebuilding, x.pending = false, nil
		x.mu.Unlock()
	}()
	one, many := keytab.New[int64](), map[uint64][]int64{}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("count index: %w", err)
	}
	defer tx.Rollback()
	var at int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&at); err != nil {
		return fmt.Errorf("count index: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT value, created_at FROM decisions`)
	if err != nil {
		return fmt.Errorf("count index: %w", err)
	}
	defer rows.Close()
	var value []byte
	var created int64
	for rows.Next() {
		if err := rows.Scan(&value, &created); err != nil {
			return fmt.Errorf("count index: %w", err)
		}
		x.addTo(one, many, maphash.Bytes(x.seed, value), created)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count index: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.pending {
		if p.seq > at {
			x.addTo(one, many, p.key, p.created)
		}
	}
	x.one, x.many = one, many
	return nil
}
