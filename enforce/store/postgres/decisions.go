package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// batch is how many rows one delete transaction touches: the sequence row
// stays locked for the batch, and bans wait behind it.
const batch = 1000

// change runs fn in a transaction that first takes the next change
// sequence, which serializes every decision writer of every replica on
// one row lock: they never wait on each other's decision rows, so they
// cannot deadlock, and sequence order is commit order. fn returns how
// many rows it changed; when none, the transaction rolls back and the
// sequence is not spent.
func (s *Store) change(ctx context.Context, fn func(tx pgx.Tx, seq int64) (int, error)) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var seq int64
	if err := tx.QueryRow(ctx, `UPDATE seq SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&seq); err != nil {
		return 0, err
	}
	n, err := fn(tx, seq)
	if err != nil || n == 0 {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	s.publish(seq)
	return n, nil
}

// collect reads the records rows returns, appending their decisions.
func collect(rows pgx.Rows, out []model.Decision) ([]model.Decision, int, error) {
	defer rows.Close()
	n := 0
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return out, n, err
		}
		out = append(out, r.Decision)
		n++
	}
	return out, n, rows.Err()
}

// DeleteDecisions marks the active decisions f selects as deleted and
// returns them. An empty filter deletes nothing: callers that mean "all"
// say so with DeleteAll.
func (s *Store) DeleteDecisions(ctx context.Context, f store.Filter) ([]model.Decision, error) {
	if f.Empty() {
		return nil, nil
	}
	return s.deleteWhere(ctx, f)
}

// DeleteAll marks every active decision deleted and returns them.
func (s *Store) DeleteAll(ctx context.Context) ([]model.Decision, error) {
	return s.deleteWhere(ctx, store.Filter{})
}

// deleteWhere deletes in batches ordered by id, each its own transaction
// and sequence: a million-row delete must not hold the sequence (and so
// every ban) for its whole length.
func (s *Store) deleteWhere(ctx context.Context, f store.Filter) ([]model.Decision, error) {
	f.History = false
	now := time.Now()
	var out []model.Decision
	for {
		n, err := s.change(ctx, func(tx pgx.Tx, seq int64) (int, error) {
			var p params
			set := `UPDATE decisions SET deleted_at = ` + p.add(now.UnixNano()) + `, del_seq = ` + p.add(seq)
			w := where(f, now, &p)
			rows, err := tx.Query(ctx, set+` WHERE deleted_at IS NULL AND id IN (SELECT id FROM decisions WHERE `+w+` ORDER BY id LIMIT `+p.add(batch)+`) RETURNING `+recordCols, p...)
			if err != nil {
				return 0, err
			}
			var n int
			out, n, err = collect(rows, out)
			return n, err
		})
		if err != nil {
			return out, s.wrap("delete decisions", err)
		}
		if n < batch {
			return out, nil
		}
	}
}

// DeleteIDs marks the active decisions with these IDs deleted and returns
// them.
func (s *Store) DeleteIDs(ctx context.Context, ids []int64) ([]model.Decision, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	now := time.Now()
	var out []model.Decision
	for part := range slices.Chunk(ids, batch) {
		_, err := s.change(ctx, func(tx pgx.Tx, seq int64) (int, error) {
			rows, err := tx.Query(ctx, `UPDATE decisions SET deleted_at = $1, del_seq = $2 WHERE id = ANY($3) AND deleted_at IS NULL RETURNING `+recordCols, now.UnixNano(), seq, part)
			if err != nil {
				return 0, err
			}
			var n int
			out, n, err = collect(rows, out)
			return n, err
		})
		if err != nil {
			return out, s.wrap("delete decisions", err)
		}
	}
	slices.SortFunc(out, func(a, b model.Decision) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Expire marks decisions that ran out by now as deleted, so streams report
// them, and returns how many it marked. Replicas may call it at once (the
// API does on every stream request): each batch waits for the sequence,
// then selects what is still unmarked, so each row is marked once.
func (s *Store) Expire(ctx context.Context, now time.Time) (int, error) {
	// Read first: most calls find nothing and need no write.
	var more bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= $1)`, now.UnixNano()).Scan(&more); err != nil {
		return 0, s.wrap("expire decisions", err)
	}
	total := 0
	for more {
		n, err := s.change(ctx, func(tx pgx.Tx, seq int64) (int, error) {
			tag, err := tx.Exec(ctx, `UPDATE decisions SET deleted_at = until, del_seq = $1
				WHERE deleted_at IS NULL AND id IN (SELECT id FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= $2 ORDER BY id LIMIT $3)`, seq, now.UnixNano(), batch)
			return int(tag.RowsAffected()), err
		})
		if err != nil {
			return total, s.wrap("expire decisions", err)
		}
		total += n
		more = n == batch
	}
	return total, nil
}

// CountDecisions counts the decisions ever taken on value (active, expired
// or deleted, within the retention) created at or after since. It asks
// the database, not a copy in memory, so other replicas' decisions count.
func (s *Store) CountDecisions(ctx context.Context, value string, since time.Time) (int, error) {
	n, err := s.counts.get(ctx, countKey{value, nanos(since)}, s.countMany)
	if err != nil {
		return 0, s.wrap("count decisions on "+value, err)
	}
	return int(n), nil
}

// HasActive reports whether value holds an active decision that an alert
// of scenario produced.
func (s *Store) HasActive(ctx context.Context, value, scenario string, now time.Time) (bool, error) {
	ok, err := s.active.get(ctx, activeKey{value, scenario, now.UnixNano()}, s.hasActiveMany)
	if err != nil {
		return false, s.wrap(fmt.Sprintf("active decision of %s for %s", value, scenario), err)
	}
	return ok, nil
}
