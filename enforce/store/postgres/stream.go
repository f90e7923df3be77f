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

// streamCols are the columns a bouncer needs.
const streamCols = `id, value, type, origin, scenario, reason, simulated, until`

func scanStream(rows pgx.Rows, r *store.Record, extra ...any) error {
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

// scanStreamID scans streamCols; the paging key is the id.
func scanStreamID(rows pgx.Rows, r *store.Record, key *int64) error {
	if err := scanStream(rows, r); err != nil {
		return err
	}
	*key = r.ID
	return nil
}

// scanStreamKey scans streamCols followed by the paging key.
func scanStreamKey(rows pgx.Rows, r *store.Record, key *int64) error {
	return scanStream(rows, r, key)
}

// The stream's pages, as in the SQLite store: startup keyed by id, deltas
// by (sequence, id), which the (seq, id) and (del_seq, id) indexes serve
// in order.
const (
	// Port-scoped decisions are left out, as in the SQLite store.
	streamStartup = `SELECT ` + streamCols + ` FROM decisions WHERE id > $1 AND seq <= $2 AND (del_seq IS NULL OR del_seq > $3) AND (until = 0 OR until > $4) AND ports = '' ORDER BY id LIMIT $5`
	streamNew     = `SELECT ` + streamCols + `, seq FROM decisions WHERE seq > $1 AND seq <= $2 AND (seq, id) > ($3, $4) AND (del_seq IS NULL OR del_seq > $5) AND (until = 0 OR until > $6) AND ports = '' ORDER BY seq, id LIMIT $7`
	streamDeleted = `SELECT ` + streamCols + `, del_seq FROM decisions WHERE del_seq > $1 AND del_seq <= $2 AND (del_seq, id) > ($3, $4) AND seq <= $5 AND ports = '' ORDER BY del_seq, id LIMIT $6`
)

// Stream calls emit with what a bouncer that saw everything up to sequence
// after must learn, at most size (0 means store.DefaultPage) decisions at
// a time: with startup, every decision active now; else the decisions
// added and deleted since, new ones first. It returns the sequence the
// bouncer is then up to. As in the SQLite store, no snapshot is held while
// emit runs: the current sequence is read first and every page selects
// rows as they were at it. That is exact across replicas because a
// sequence value is only visible once its transaction, and every one
// before it, committed.
func (s *Store) Stream(ctx context.Context, after int64, startup bool, now time.Time, size int, emit func(store.Change, []store.Record) error) (int64, error) {
	if size <= 0 {
		size = store.DefaultPage
	}
	cur, err := s.Seq(ctx)
	if err != nil {
		return 0, err
	}
	page := make([]store.Record, 0, size)
	each := func(ch store.Change, scan func(pgx.Rows, *store.Record, *int64) error, k1, k2 int64, q string, args func(k1, k2 int64) []any) error {
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
		err = each(store.New, scanStreamID, 0, 0, streamStartup,
			func(_, id int64) []any { return []any{id, cur, cur, nowNs} })
	} else {
		err = each(store.New, scanStreamKey, after, math.MaxInt64, streamNew,
			func(seq, id int64) []any { return []any{after, cur, seq, id, cur, nowNs} })
		if err == nil {
			err = each(store.Deleted, scanStreamKey, after, math.MaxInt64, streamDeleted,
				func(seq, id int64) []any { return []any{after, cur, seq, id, after} })
		}
	}
	if err != nil {
		return 0, s.wrap("stream", err)
	}
	return cur, nil
}

// Seq is the current change sequence.
func (s *Store) Seq(ctx context.Context) (int64, error) {
	var cur int64
	if err := s.pool.QueryRow(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&cur); err != nil {
		return 0, s.wrap("read sequence", err)
	}
	s.publish(cur)
	return cur, nil
}
