package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// streamCols are the columns a bouncer needs: fewer columns is fewer cgo
// calls per row, which is most of a million-row startup pull.
const streamCols = `id, value, type, origin, scenario, reason, simulated, until`

// scanStreamID scans streamCols; the paging key is the id.
func scanStreamID(rows *sql.Rows, r *Record, key *int64) error {
	if err := scanStream(rows, r); err != nil {
		return err
	}
	*key = r.ID
	return nil
}

// scanStreamKey scans streamCols followed by the paging key.
func scanStreamKey(rows *sql.Rows, r *Record, key *int64) error {
	return scanStream(rows, r, key)
}

func scanStream(rows *sql.Rows, r *Record, extra ...any) error {
	var value, origin string
	var until int64
	if err := rows.Scan(append([]any{&r.ID, &value, &r.Type, &origin, &r.Scenario, &r.Reason, &r.Simulated, &until}, extra...)...); err != nil {
		return err
	}
	p, geo, err := model.ParseDecisionValue(value)
	if err != nil {
		return fmt.Errorf("decision %d: bad stored value %q: %w", r.ID, value, err)
	}
	r.Value, r.Geo, r.Origin, r.Until = p, geo, model.Origin(origin), fromNanos(until)
	return nil
}

// Change says whether a streamed decision is new or deleted.
type Change int

const (
	New Change = iota
	Deleted
)

// DefaultPage is how many decisions a paged read holds in memory.
const DefaultPage = 256

// readPage appends to dst the rows q selects, scanned by scan, and closes
// them before returning. key is what scan read past the record's columns
// from the last row (the keyset paging key), if anything.
func (s *Store) readPage(ctx context.Context, dst []Record, scan func(*sql.Rows, *Record, *int64) error, q string, args ...any) (_ []Record, key int64, err error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return dst, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var r Record
		if err := scan(rows, &r, &key); err != nil {
			return dst, 0, err
		}
		dst = append(dst, r)
	}
	return dst, key, rows.Err()
}

func scanFull(rows *sql.Rows, r *Record, _ *int64) error {
	rec, err := scanRecord(rows)
	*r = rec
	return err
}

// ListPages calls fn with the decisions f selects, newest first, at most
// size (0 means DefaultPage) at a time; f.Limit caps the total. Each page
// is read and its rows closed before fn sees it, so fn may write to a slow
// client without pinning a connection of the pool or a snapshot of the
// file. fn must not keep the slice.
func (s *Store) ListPages(ctx context.Context, f Filter, size int, fn func([]Record) error) error {
	if size <= 0 {
		size = DefaultPage
	}
	where, args := f.where(time.Now())
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` AND id < ? ORDER BY id DESC LIMIT ?`
	before, left := int64(math.MaxInt64), f.Limit
	page := make([]Record, 0, size)
	for {
		n := size
		if f.Limit > 0 {
			n = min(n, left)
		}
		var err error
		page, _, err = s.readPage(ctx, page[:0], scanFull, q, append(slices.Clip(args), before, n)...)
		if err != nil {
			return fmt.Errorf("list decisions: %w", err)
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

// The stream's pages. Startup: active at cur and now (added by then, not
// deleted by then, not expired now); the unary + keeps SQLite off the
// indexes, as walking the table in rowid order gives id order without
// sorting a million rows. Deltas: keyed by (sequence, id), the index
// order, since ordering by id would make SQLite scan the whole table to
// skip a sort.
const (
	streamStartup = `SELECT ` + streamCols + ` FROM decisions WHERE id > ? AND +seq <= ? AND (+del_seq IS NULL OR +del_seq > ?) AND (+until = 0 OR +until > ?) AND +ports = '' ORDER BY id LIMIT ?`
	streamNew     = `SELECT ` + streamCols + `, seq FROM decisions WHERE seq > ? AND seq <= ? AND (seq, id) > (?, ?) AND (del_seq IS NULL OR del_seq > ?) AND (until = 0 OR until > ?) AND +ports = '' ORDER BY seq, id LIMIT ?`
	streamDeleted = `SELECT ` + streamCols + `, del_seq FROM decisions WHERE del_seq > ? AND del_seq <= ? AND (del_seq, id) > (?, ?) AND seq <= ? AND +ports = '' ORDER BY del_seq, id LIMIT ?`
)

// Port-scoped decisions are left out of every stream: a CrowdSec bouncer
// has no field for ports, and would ban the whole address.
//
// Stream calls emit with what a bouncer that saw everything up to sequence
// after must learn, at most size (0 means DefaultPage) decisions at a
// time: with startup, every decision active now; else the decisions added
// and deleted since, new ones first. It returns the sequence the bouncer
// is then up to.
//
// No snapshot is held while emit runs, as emit writes to a client that may
// stop reading: the current sequence is read first and every page selects
// rows as they were at that sequence (each row carries the sequences that
// added and deleted it), so the pages read apart add up to one consistent
// view, and what changes meanwhile is the next delta's. Each page's rows
// are closed before emit sees it; emit must not keep the slice. Records
// carry the decision only (no alert or bookkeeping times).
func (s *Store) Stream(ctx context.Context, after int64, startup bool, now time.Time, size int, emit func(Change, []Record) error) (int64, error) {
	if size <= 0 {
		size = DefaultPage
	}
	cur, err := s.Seq(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	page := make([]Record, 0, size)
	// each reads q page by page; args(k1, k2) are q's arguments given the
	// key the previous page ended at, starting from (k1, k2).
	each := func(ch Change, scan func(*sql.Rows, *Record, *int64) error, k1, k2 int64, q string, args func(k1, k2 int64) []any) error {
		for {
			var err error
			page, k1, err = s.readPage(ctx, page[:0], scan, q, append(args(k1, k2), size)...)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				return nil
			}
			if err := emit(ch, page); err != nil {
				return err
			}
			if len(page) < size {
				return nil
			}
			k2 = page[len(page)-1].ID
		}
	}
	nowNs := now.UnixNano()
	if startup {
		// Keyed by id alone.
		err = each(New, scanStreamID, 0, 0, streamStartup,
			func(_, id int64) []any { return []any{id, cur, cur, nowNs} })
	} else {
		// The key starts at (after, max): the first page begins past
		// sequence after.
		err = each(New, scanStreamKey, after, math.MaxInt64, streamNew,
			func(seq, id int64) []any { return []any{after, cur, seq, id, cur, nowNs} })
		if err == nil {
			err = each(Deleted, scanStreamKey, after, math.MaxInt64, streamDeleted,
				func(seq, id int64) []any { return []any{after, cur, seq, id, after} })
		}
	}
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	return cur, nil
}

// Seq is the current change sequence.
func (s *Store) Seq(ctx context.Context) (int64, error) {
	var cur int64
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("read sequence: %w", err)
	}
	return cur, nil
}
