package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// InsertAlert stores an alert with the decisions it produced (IDs assigned
// as by InsertDecisions) in one transaction and returns the alert's ID.
func (s *Store) InsertAlert(ctx context.Context, a model.Alert, ds []model.Decision) (int64, error) {
	s.assignIDs(ds)
	data, err := encodeAlert(a)
	if err != nil {
		return 0, fmt.Errorf("store alert: %w", err)
	}
	now := time.Now()
	var id, seq int64
	err = s.write(ctx, func(tx *sql.Tx, sq int64) error {
		seq = sq
		res, err := tx.ExecContext(ctx, `INSERT INTO alerts (created_at, scenario, scope, value, events_count, simulated, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			now.UnixNano(), a.Scenario, a.Scope, a.Value, a.EventsCount, a.Simulated, data)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		return insertDecisions(ctx, tx, seq, id, now, ds)
	})
	if err != nil {
		return 0, fmt.Errorf("store alert %s %s: %w", a.Scenario, a.Value, err)
	}
	s.counted(seq, now, ds)
	s.active.change(seq, ds, false)
	return id, nil
}

// AlertRecord is a stored alert.
type AlertRecord struct {
	ID        int64
	Created   time.Time
	Alert     model.Alert
	Decisions []int64
}

// AlertFilter selects alerts; zero fields match everything.
type AlertFilter struct {
	Scenario string // substring
	Value    string
	Since    time.Time
	// Until keeps alerts stored before it (CrowdSec's until filter).
	Until time.Time
	// Scope matches exactly ("Ip", "Range").
	Scope string
	Limit int // 0 means 100
}

// ListAlerts returns alerts, newest first, each with the IDs of the
// decisions it produced.
func (s *Store) ListAlerts(ctx context.Context, f AlertFilter) ([]AlertRecord, error) {
	// The decisions through their alert_id index, one subquery a row.
	q := `SELECT id, created_at, data, (SELECT group_concat(d.id) FROM decisions d WHERE d.alert_id = alerts.id) FROM alerts WHERE created_at >= ?`
	args := []any{nanos(f.Since)}
	if f.Scenario != "" {
		q += ` AND instr(scenario, ?) > 0`
		args = append(args, f.Scenario)
	}
	if f.Value != "" {
		q += ` AND value = ?`
		args = append(args, f.Value)
	}
	if !f.Until.IsZero() {
		q += ` AND created_at < ?`
		args = append(args, f.Until.UnixNano())
	}
	if f.Scope != "" {
		q += ` AND scope = ?`
		args = append(args, f.Scope)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	var out []AlertRecord
	for rows.Next() {
		var a AlertRecord
		var created int64
		var data []byte
		var ids sql.NullString
		if err := rows.Scan(&a.ID, &created, &data, &ids); err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		a.Created = fromNanos(created)
		if err := decodeAlert(data, &a.Alert); err != nil {
			return nil, fmt.Errorf("alert %d: %w", a.ID, err)
		}
		for _, v := range strings.Split(ids.String, ",") {
			if id, err := strconv.ParseInt(v, 10, 64); err == nil {
				a.Decisions = append(a.Decisions, id)
			}
		}
		slices.Sort(a.Decisions)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// GetAlert returns one alert with the IDs of its decisions.
func (s *Store) GetAlert(ctx context.Context, id int64) (AlertRecord, error) {
	a := AlertRecord{ID: id}
	var created int64
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT created_at, data FROM alerts WHERE id = ?`, id).Scan(&created, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	a.Created = fromNanos(created)
	if err := decodeAlert(data, &a.Alert); err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM decisions WHERE alert_id = ? ORDER BY id`, id)
	if err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d int64
		if err := rows.Scan(&d); err != nil {
			return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
		}
		a.Decisions = append(a.Decisions, d)
	}
	return a, rows.Err()
}
