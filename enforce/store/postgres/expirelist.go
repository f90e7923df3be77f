package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moatsec/moat/internal/model"
)

// ExpireSome is the SQLite store's ExpireSome: it marks at most max of the
// decisions that ran out by now, oldest ID first, and returns them, so a
// caller can act on each unban without holding a mass expiry at once.
func (s *Store) ExpireSome(ctx context.Context, now time.Time, max int) ([]model.Decision, error) {
	var out []model.Decision
	_, err := s.change(ctx, func(tx pgx.Tx, seq int64) (int, error) {
		rows, err := tx.Query(ctx, `UPDATE decisions SET deleted_at = until, del_seq = $1
			WHERE deleted_at IS NULL AND id IN (SELECT id FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= $2 ORDER BY id LIMIT $3)
			RETURNING `+recordCols, seq, now.UnixNano(), max)
		if err != nil {
			return 0, err
		}
		var n int
		out, n, err = collect(rows, out[:0])
		return n, err
	})
	if err != nil {
		return nil, s.wrap("expire decisions", err)
	}
	return out, nil
}
