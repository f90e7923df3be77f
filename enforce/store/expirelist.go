package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// ExpireSome is Expire for a caller that acts on each unban: it marks at
// most max of the decisions that ran out by now, oldest ID first, and
// returns them. Called until it returns fewer than max, it marks what
// Expire marks, a bounded slice at a time, so a mass expiry is never
// held in memory at once.
func (s *Store) ExpireSome(ctx context.Context, now time.Time, max int) ([]model.Decision, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, now.UnixNano()).Scan(&n); err != nil {
		return nil, fmt.Errorf("expire decisions: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	var out []model.Decision
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE decisions SET deleted_at = until, del_seq = ?
			WHERE id IN (SELECT id FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= ? ORDER BY id LIMIT ?)
			RETURNING `+recordCols, seq, now.UnixNano(), max)
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
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("expire decisions: %w", err)
	}
	return out, nil
}
