package store

import (
	"context"
	"fmt"
	"time"
)

// CountMatching counts the decisions f selects, f.Limit aside: the total a
// capped listing shows part of. It reads no row, only counts them: 1M
// active decisions take one pass over the table, no memory per row.
func (s *Store) CountMatching(ctx context.Context, f Filter) (int, error) {
	where, args := f.where(time.Now())
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count decisions: %w", err)
	}
	return n, nil
}
