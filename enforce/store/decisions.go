package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// bounds returns the first and last address of p as 16 bytes each, so
// SQLite's memcmp ordering of BLOBs compares addresses.
func bounds(p netip.Prefix) ([]byte, []byte) {
	p = p.Masked()
	first := p.Addr().As16()
	last := first
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	return first[:], last[:]
}

// Record is a stored decision with its bookkeeping.
type Record struct {
	model.Decision
	AlertID int64
	Created time.Time
	// Deleted is when the decision was deleted or swept as expired; zero
	// while active.
	Deleted time.Time
}

// Scope is the record's CrowdSec scope.
func (r Record) Scope() string { return r.ScopeName() }

func (s *Store) assignIDs(ds []model.Decision) {
	need := 0
	for _, d := range ds {
		if d.ID == 0 {
			need++
		}
	}
	if need == 0 {
		return
	}
	id := s.ReserveIDs(need)
	for i := range ds {
		if ds[i].ID == 0 {
			ds[i].ID = id
			id++
		}
	}
}

const insertDecision = `INSERT INTO decisions (id, alert_id, value, scope, start_ip, end_ip, type, origin, scenario, reason, simulated, created_at, until, seq, ports, protocol)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func insertDecisions(ctx context.Context, tx *sql.Tx, seq, alertID int64, now time.Time, ds []model.Decision) error {
	if len(ds) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, insertDecision)
	if err != nil {
		return err
	}
	defer st.Close()
	var aid any
	if alertID != 0 {
		aid = alertID
	}
	for _, d := range ds {
		value, scope, first, last, err := storedValue(d)
		if err != nil {
			return err
		}
		typ := d.Type
		if typ == "" {
			typ = "ban"
		}
		if _, err := st.ExecContext(ctx, d.ID, aid, value, scope, first, last, typ, string(d.Origin), d.Scenario, d.Reason, d.Simulated, now.UnixNano(), nanos(d.Until), seq, model.FormatPorts(d.Ports), d.Protocol); err != nil {
			return fmt.Errorf("insert decision %d: %w", d.ID, err)
		}
	}
	return nil
}

// storedValue is how d's value is stored: its text, its scope, and the
// bounds of a range. Only ranges need bounds: single addresses are found
// by value, and leaving them NULL saves 32 bytes a row; a Country or AS
// decision has none, its networks being the GeoIP database's.
func storedValue(d model.Decision) (value, scope string, first, last []byte, err error) {
	if !d.Geo.IsZero() {
		return d.Geo.Value, d.Geo.Scope, nil, nil, nil
	}
	if !d.Value.IsValid() {
		return "", "", nil, nil, fmt.Errorf("decision %d: invalid value", d.ID)
	}
	p := model.Canonical(d.Value)
	if model.ScopeOf(p) == model.ScopeRange {
		first, last = bounds(p)
	}
	return model.ValueString(p), model.ScopeOf(p), first, last, nil
}

// InsertDecisions stores decisions, giving those with a zero ID a fresh
// one (ds is updated in place). It returns after the commit.
func (s *Store) InsertDecisions(ctx context.Context, ds []model.Decision) error {
	s.assignIDs(ds)
	now := time.Now()
	var seq int64
	err := s.write(ctx, func(tx *sql.Tx, sq int64) error {
		seq = sq
		return insertDecisions(ctx, tx, seq, 0, now, ds)
	})
	if err != nil {
		return fmt.Errorf("store decisions: %w", err)
	}
	s.counted(seq, now, ds)
	return nil
}

// counted adds committed decisions to the count index.
func (s *Store) counted(seq int64, created time.Time, ds []model.Decision) {
	values := make([]string, len(ds))
	for i, d := range ds {
		values[i] = d.ValueString()
	}
	s.counts.add(seq, created.UnixNano(), values)
}

// DeleteDecisions marks the active decisions f selects as deleted and
// returns them. An empty filter deletes nothing: callers that mean "all"
// say so with DeleteAll.
func (s *Store) DeleteDecisions(ctx context.Context, f Filter) ([]model.Decision, error) {
	if f.Empty() {
		return nil, nil
	}
	return s.deleteWhere(ctx, f)
}

// DeleteIDs marks the active decisions with these IDs deleted and returns
// them.
func (s *Store) DeleteIDs(ctx context.Context, ids []int64) ([]model.Decision, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := time.Now()
	var out []model.Decision
	var delSeq int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		st, err := tx.PrepareContext(ctx, `UPDATE decisions SET deleted_at = ?, del_seq = ? WHERE id = ? AND deleted_at IS NULL RETURNING `+recordCols)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			r, err := scanRecord(st.QueryRowContext(ctx, now.UnixNano(), seq, id))
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, r.Decision)
		}
		delSeq = seq
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete decisions: %w", err)
	}
	s.active.change(delSeq, out, true)
	return out, nil
}

// DeleteAll marks every active decision deleted and returns them.
func (s *Store) DeleteAll(ctx context.Context) ([]model.Decision, error) {
	return s.deleteWhere(ctx, Filter{})
}

func (s *Store) deleteWhere(ctx context.Context, f Filter) ([]model.Decision, error) {
	f.History = false
	now := time.Now()
	where, args := f.where(now)
	var out []model.Decision
	var delSeq int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		rows, err := tx.QueryContext(ctx, `UPDATE decisions SET deleted_at = ?, del_seq = ? WHERE `+where+` RETURNING `+recordCols,
			append([]any{now.UnixNano(), seq}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			out = append(out, r.Decision)
		}
		delSeq = seq
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("delete decisions: %w", err)
	}
	s.active.change(delSeq, out, true)
	return out, nil
}

// Expire marks decisions that ran out by now as deleted, so streams report
// them, and returns how many it marked.
func (s *Store) Expire(ctx context.Context, now time.Time) (int, error) {
	// Read first: most calls find nothing and need no write transaction.
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, now.UnixNano()).Scan(&n); err != nil {
		return 0, fmt.Errorf("expire decisions: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var marked int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		res, err := tx.ExecContext(ctx, `UPDATE decisions SET deleted_at = until, del_seq = ? WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, seq, now.UnixNano())
		if err != nil {
			return err
		}
		marked, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire decisions: %w", err)
	}
	return int(marked), nil
}

// CountDecisions counts the decisions ever taken on value (active, expired
// or deleted, within the retention) created at or after since, from
// memory: it runs on the alert-to-kernel path.
func (s *Store) CountDecisions(ctx context.Context, value string, since time.Time) (int, error) {
	if !s.indexesReady() {
		return s.countFromTable(ctx, value, since)
	}
	return s.counts.count(value, nanos(since)), nil
}
