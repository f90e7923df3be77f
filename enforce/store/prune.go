package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// PruneStats says what Prune removed.
type PruneStats struct {
	Decisions int64
	Alerts    int64
}

// Prune deletes decisions that ended (expired or deleted) before cutoff and
// alerts older than cutoff that no active decision refers to, then returns
// freed pages to the file system so the file does not grow without bound.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (PruneStats, error) {
	var st PruneStats
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM decisions WHERE deleted_at IS NOT NULL AND deleted_at < ?`, cutoff.UnixNano())
		if err != nil {
			return err
		}
		if st.Decisions, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `DELETE FROM alerts WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL)`, cutoff.UnixNano())
		if err != nil {
			return err
		}
		st.Alerts, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return PruneStats{}, fmt.Errorf("prune store: %w", err)
	}
	if st.Decisions > 0 {
		if err := s.rebuildCounts(ctx, s.r); err != nil {
			return st, fmt.Errorf("prune store: %w", err)
		}
	}
	// incremental_vacuum frees pages as it is stepped: drain it.
	rows, err := s.w.QueryContext(ctx, `PRAGMA incremental_vacuum`)
	if err != nil {
		return st, fmt.Errorf("prune store: vacuum: %w", err)
	}
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("prune store: vacuum: %w", err)
	}
	// Truncate the WAL so the pages vacuum freed leave the disk too.
	if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return st, fmt.Errorf("prune store: checkpoint: %w", err)
	}
	return st, nil
}

// CapAlerts deletes the oldest alerts past the newest max that no active
// decision refers to, so a flood cannot grow the file faster than
// retention prunes it, and returns how many it deleted.
func (s *Store) CapAlerts(ctx context.Context, max int) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM alerts WHERE id <= (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET ?)
			AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL)`, max)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cap alerts at %d: %w", max, err)
	}
	return n, nil
}
