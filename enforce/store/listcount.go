package store

import (
	"context"
	"fmt"
	"time"

	"github.com/moatsec/moat/internal/model"
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

// ActiveByOrigin counts the enforceable decisions (active at now, not
// simulated) by origin. SQLite counts them: reading a million rows into Go
// to count them made each metrics scrape allocate a gigabyte.
func (s *Store) ActiveByOrigin(ctx context.Context, now time.Time) (map[model.Origin]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT origin, count(*) FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > ?) AND simulated = 0 GROUP BY origin`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("count active decisions: %w", err)
	}
	defer rows.Close()
	out := map[model.Origin]int{}
	for rows.Next() {
		var origin string
		var n int
		if err := rows.Scan(&origin, &n); err != nil {
			return nil, fmt.Errorf("count active decisions: %w", err)
		}
		out[model.Origin(origin)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count active decisions: %w", err)
	}
	return out, nil
}
