package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// AllowEntry is an allowlist entry managed from the CLI.
type AllowEntry struct {
	Value   netip.Prefix
	Reason  string
	Created time.Time
}

// AddAllow stores an allowlist entry.
func (s *Store) AddAllow(ctx context.Context, e AllowEntry) error {
	v := model.ValueString(e.Value)
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM allowlist WHERE value = ?`, v).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("allowlist entry %s: %w", v, ErrExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO allowlist (value, reason, created_at) VALUES (?, ?, ?)`, v, e.Reason, nanos(e.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("add allowlist entry: %w", err)
	}
	return nil
}

// DeleteAllow removes an allowlist entry.
func (s *Store) DeleteAllow(ctx context.Context, value netip.Prefix) error {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM allowlist WHERE value = ?`, model.ValueString(value))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete allowlist entry: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("allowlist entry %s: %w", model.ValueString(value), ErrNotFound)
	}
	return nil
}

// ListAllow returns the stored allowlist entries.
func (s *Store) ListAllow(ctx context.Context) ([]AllowEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT value, reason, created_at FROM allowlist ORDER BY value`)
	if err != nil {
		return nil, fmt.Errorf("list allowlist: %w", err)
	}
	defer rows.Close()
	var out []AllowEntry
	for rows.Next() {
		var v string
		var e AllowEntry
		var created int64
		if err := rows.Scan(&v, &e.Reason, &created); err != nil {
			return nil, fmt.Errorf("list allowlist: %w", err)
		}
		p, err := model.ParseValue(v)
		if err != nil {
			return nil, fmt.Errorf("allowlist entry %q: %w", v, err)
		}
		e.Value, e.Created = p, fromNanos(created)
		out = append(out, e)
	}
	return out, rows.Err()
}

// SetAllowExpiry makes an allowlist entry expire at t (zero: never); the
// daemon removes it then.
func (s *Store) SetAllowExpiry(ctx context.Context, value netip.Prefix, t time.Time) error {
	v := model.ValueString(value)
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		var exp int64
		if !t.IsZero() {
			exp = nanos(t)
		}
		res, err := tx.ExecContext(ctx, `UPDATE allowlist SET expires_at = ? WHERE value = ?`, exp, v)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("set allowlist expiry: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("allowlist entry %s: %w", v, ErrNotFound)
	}
	return nil
}

// AllowExpiries returns the expiry of each allowlist entry that has one.
func (s *Store) AllowExpiries(ctx context.Context) (map[netip.Prefix]time.Time, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT value, expires_at FROM allowlist WHERE expires_at > 0`)
	if err != nil {
		return nil, fmt.Errorf("allowlist expiries: %w", err)
	}
	defer rows.Close()
	out := map[netip.Prefix]time.Time{}
	for rows.Next() {
		var v string
		var exp int64
		if err := rows.Scan(&v, &exp); err != nil {
			return nil, fmt.Errorf("allowlist expiries: %w", err)
		}
		p, err := model.ParseValue(v)
		if err != nil {
			return nil, fmt.Errorf("allowlist entry %q: %w", v, err)
		}
		out[p] = fromNanos(exp)
	}
	return out, rows.Err()
}
