package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// readPage appends to dst the records q selects, scanned by scan, and
// closes the rows before returning; key is what scan read past the
// record from the last row (the keyset paging key).
func (s *Store) readPage(ctx context.Context, dst []store.Record, scan func(pgx.Rows, *store.Record, *int64) error, q string, args ...any) (_ []store.Record, key int64, err error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return dst, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var r store.Record
		if err := scan(rows, &r, &key); err != nil {
			return dst, 0, err
		}
		dst = append(dst, r)
	}
	return dst, key, rows.Err()
}

func scanFull(rows pgx.Rows, r *store.Record, _ *int64) error {
	rec, err := scanRecord(rows)
	*r = rec
	return err
}

// ListDecisions returns the decisions f selects, newest first.
func (s *Store) ListDecisions(ctx context.Context, f store.Filter) ([]store.Record, error) {
	var p params
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + where(f, time.Now(), &p) + ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + p.add(f.Limit)
	}
	out, _, err := s.readPage(ctx, nil, scanFull, q, p...)
	if err != nil {
		return nil, s.wrap("list decisions", err)
	}
	return out, nil
}

// ListPages calls fn with the decisions f selects, newest first, at most
// size (0 means store.DefaultPage) at a time; f.Limit caps the total.
// Each page's rows are closed before fn sees it, so a slow client holds
// no connection. fn must not keep the slice.
func (s *Store) ListPages(ctx context.Context, f store.Filter, size int, fn func([]store.Record) error) error {
	if size <= 0 {
		size = store.DefaultPage
	}
	var p params
	w := where(f, time.Now(), &p)
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + w + ` AND id < $` + fmt.Sprint(len(p)+1) + ` ORDER BY id DESC LIMIT $` + fmt.Sprint(len(p)+2)
	before, left := int64(math.MaxInt64), f.Limit
	page := make([]store.Record, 0, size)
	for {
		n := size
		if f.Limit > 0 {
			n = min(n, left)
		}
		var err error
		page, _, err = s.readPage(ctx, page[:0], scanFull, q, append(p[:len(p):len(p)], before, n)...)
		if err != nil {
			return s.wrap("list decisions", err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		left -= len(page)
		if len(page) < n || f.Limit > 0 && left <= 0 {
			return nil
		}
		before = page[len(page)-1].ID
	}
}

// CountMatching counts the decisions f selects, f.Limit aside.
func (s *Store) CountMatching(ctx context.Context, f store.Filter) (int, error) {
	var p params
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE `+where(f, time.Now(), &p), p...).Scan(&n); err != nil {
		return 0, s.wrap("count decisions", err)
	}
	return n, nil
}

// Active returns every decision in force at now, simulated ones included.
func (s *Store) Active(ctx context.Context, now time.Time) ([]model.Decision, error) {
	var out []model.Decision
	err := s.ActivePages(ctx, now, 0, func(ds []model.Decision) error {
		out = append(out, ds...)
		return nil
	})
	return out, err
}

// ActivePages calls fn with the decisions active at now, in ID order, at
// most size (0 means 4096) at a time, so no snapshot of a million rows is
// held. fn must not keep the slice.
func (s *Store) ActivePages(ctx context.Context, now time.Time, size int, fn func([]model.Decision) error) error {
	if size <= 0 {
		size = 4096
	}
	const q = `SELECT ` + recordCols + ` FROM decisions WHERE id > $1 AND deleted_at IS NULL AND (until = 0 OR until > $2) ORDER BY id LIMIT $3`
	page := make([]store.Record, 0, size)
	ds := make([]model.Decision, 0, size)
	var after int64
	for {
		var err error
		page, _, err = s.readPage(ctx, page[:0], scanFull, q, after, now.UnixNano(), size)
		if err != nil {
			return s.wrap("active decisions", err)
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

// ActiveByOrigin counts the enforceable decisions (active at now, not
// simulated) by origin; the database counts, no row comes to Go.
func (s *Store) ActiveByOrigin(ctx context.Context, now time.Time) (map[model.Origin]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT origin, count(*) FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > $1) AND NOT simulated GROUP BY origin`, now.UnixNano())
	if err != nil {
		return nil, s.wrap("count active decisions", err)
	}
	defer rows.Close()
	out := map[model.Origin]int{}
	for rows.Next() {
		var origin string
		var n int
		if err := rows.Scan(&origin, &n); err != nil {
			return nil, s.wrap("count active decisions", err)
		}
		out[model.Origin(origin)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("count active decisions", err)
	}
	return out, nil
}
