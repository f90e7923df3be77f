package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// idBlock is how many decision IDs a Store reserves at a time: one round
// trip per block keeps the counter off the alert-to-kernel path.
const idBlock = 1024

// ids is the block of decision IDs this Store holds: next to end-1 are
// free. IDs are unique across replicas but, with several, not in time
// order between them.
type ids struct {
	mu        sync.Mutex
	next, end int64
	// err is the last failed reservation, for the insert that refuses
	// the negative IDs it led to.
	err error
}

// errNoIDs is returned for decisions carrying IDs ReserveIDs could not get.
var errNoIDs = errors.New("decision IDs could not be reserved")

// ReserveIDs reserves n consecutive decision IDs and returns the first.
// They come from this Store's block, or from a new block taken from the
// database's counter. The interface leaves no room for an error: when the
// database cannot be reached it returns negative IDs, which every insert
// refuses with the reason, so a ban that reached the kernel is never
// stored under an ID another replica may own.
func (s *Store) ReserveIDs(n int) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := s.reserveIDs(ctx, n)
	if err != nil {
		// -k to -k+n-1, all below zero and never handed out twice.
		return -s.badID.Add(int64(n))
	}
	return id
}

func (s *Store) reserveIDs(ctx context.Context, n int) (int64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("reserve %d IDs", n)
	}
	s.ids.mu.Lock()
	defer s.ids.mu.Unlock()
	if s.ids.end-s.ids.next >= int64(n) {
		id := s.ids.next
		s.ids.next += int64(n)
		return id, nil
	}
	// What is left of the block is dropped: IDs need only be unique.
	size := max(int64(n), idBlock)
	var first int64
	err := s.pool.QueryRow(ctx, `UPDATE decision_ids SET next = next + $1 WHERE id = 1 RETURNING next - $1`, size).Scan(&first)
	if err != nil {
		s.ids.err = s.wrap("reserve decision IDs", err)
		return 0, s.ids.err
	}
	s.ids.next, s.ids.end = first+int64(n), first+size
	return first, nil
}

// assignIDs gives decisions with a zero ID a fresh one and refuses
// negative ones (see ReserveIDs).
func (s *Store) assignIDs(ctx context.Context, ds []model.Decision) error {
	need := 0
	for _, d := range ds {
		switch {
		case d.ID == 0:
			need++
		case d.ID < 0:
			s.ids.mu.Lock()
			err := s.ids.err
			s.ids.mu.Unlock()
			if err == nil {
				return fmt.Errorf("decision %d: %w", d.ID, errNoIDs)
			}
			return fmt.Errorf("decision %d: %w: %w", d.ID, errNoIDs, err)
		}
	}
	if need == 0 {
		return nil
	}
	id, err := s.reserveIDs(ctx, need)
	if err != nil {
		return err
	}
	for i := range ds {
		if ds[i].ID == 0 {
			ds[i].ID = id
			id++
		}
	}
	return nil
}
