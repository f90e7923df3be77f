package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// ListAlerts returns alerts, newest first, each with the IDs of the
// decisions it produced.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.AlertRecord, error) {
	var p params
	q := `SELECT id, created_at, data, coalesce((SELECT array_agg(d.id ORDER BY d.id) FROM decisions d WHERE d.alert_id = alerts.id), '{}')
		FROM alerts WHERE created_at >= ` + p.add(nanos(f.Since))
	if f.Scenario != "" {
		q += ` AND strpos(scenario, ` + p.add(f.Scenario) + `) > 0`
	}
	if f.Value != "" {
		q += ` AND value = ` + p.add(f.Value)
	}
	if !f.Until.IsZero() {
		q += ` AND created_at < ` + p.add(f.Until.UnixNano())
	}
	if f.Scope != "" {
		q += ` AND scope = ` + p.add(f.Scope)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += ` ORDER BY id DESC LIMIT ` + p.add(limit)
	rows, err := s.pool.Query(ctx, q, p...)
	if err != nil {
		return nil, s.wrap("list alerts", err)
	}
	defer rows.Close()
	var out []store.AlertRecord
	for rows.Next() {
		var a store.AlertRecord
		var created int64
		var data string
		if err := rows.Scan(&a.ID, &created, &data, &a.Decisions); err != nil {
			return nil, s.wrap("list alerts", err)
		}
		if len(a.Decisions) == 0 {
			a.Decisions = nil
		}
		a.Created = fromNanos(created)
		if err := decodeAlert(data, &a.Alert); err != nil {
			return nil, s.wrap(fmt.Sprintf("alert %d", a.ID), err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list alerts", err)
	}
	return out, nil
}

// GetAlert returns one alert with the IDs of its decisions.
func (s *Store) GetAlert(ctx context.Context, id int64) (store.AlertRecord, error) {
	a := store.AlertRecord{ID: id}
	var created int64
	var data string
	err := s.pool.QueryRow(ctx, `SELECT created_at, data, coalesce((SELECT array_agg(d.id ORDER BY d.id) FROM decisions d WHERE d.alert_id = alerts.id), '{}') FROM alerts WHERE id = $1`, id).
		Scan(&created, &data, &a.Decisions)
	if notFound(err) {
		return store.AlertRecord{}, fmt.Errorf("alert %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.AlertRecord{}, s.wrap(fmt.Sprintf("alert %d", id), err)
	}
	if len(a.Decisions) == 0 {
		a.Decisions = nil
	}
	a.Created = fromNanos(created)
	if err := decodeAlert(data, &a.Alert); err != nil {
		return store.AlertRecord{}, s.wrap(fmt.Sprintf("alert %d", id), err)
	}
	return a, nil
}

// Prune deletes decisions that ended (expired or deleted) before cutoff and
// alerts older than cutoff that no active decision refers to. It deletes
// in batches ordered by id, skipping rows another replica's prune holds,
// so replicas pruning at once neither deadlock nor delete a row twice,
// and no transaction grows with the backlog. Space returns to PostgreSQL
// through autovacuum.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (store.PruneStats, error) {
	var st store.PruneStats
	var err error
	st.Decisions, err = s.deleteBatches(ctx, `DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE deleted_at IS NOT NULL AND deleted_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff.UnixNano())
	if err != nil {
		return st, s.wrap("prune decisions", err)
	}
	st.Alerts, err = s.deleteBatches(ctx, `DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < $1
		AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff.UnixNano())
	if err != nil {
		return st, s.wrap("prune alerts", err)
	}
	return st, nil
}

// CapAlerts deletes the oldest alerts past the newest max that no active
// decision refers to, and returns how many it deleted, in batches as
// Prune does.
func (s *Store) CapAlerts(ctx context.Context, max int) (int64, error) {
	var edge int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET $1), 0)`, max).Scan(&edge)
	if err != nil {
		return 0, s.wrap(fmt.Sprintf("cap alerts at %d", max), err)
	}
	if edge == 0 {
		return 0, nil
	}
	n, err := s.deleteBatches(ctx, `DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE id <= $1
		AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`, edge)
	if err != nil {
		return n, s.wrap(fmt.Sprintf("cap alerts at %d", max), err)
	}
	return n, nil
}

// deleteBatches runs q (arguments arg and the batch size) until a batch
// deletes less than a full one, and returns the rows deleted.
func (s *Store) deleteBatches(ctx context.Context, q string, arg int64) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, q, arg, batch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < batch {
			return total, nil
		}
	}
}
