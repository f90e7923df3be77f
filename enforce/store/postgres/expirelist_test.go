package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

func TestExpireSome(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s := open(t, pg.DSN())
	ctx := context.Background()
	now := time.Now()
	ds := decisions(5, 0, now.Add(time.Minute))
	// The last one never expires.
	ds[4].Until = time.Time{}
	if err := s.InsertDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute)
	first, err := s.ExpireSome(ctx, later, 3)
	if err != nil || len(first) != 3 || first[0].ID != ds[0].ID || first[0].Value != ds[0].Value {
		t.Fatalf("first pass: %+v, %v", first, err)
	}
	rest, err := s.ExpireSome(ctx, later, 3)
	if err != nil || len(rest) != 1 || rest[0].ID != ds[3].ID {
		t.Fatalf("second pass: %+v, %v", rest, err)
	}
	if none, err := s.ExpireSome(ctx, now.Add(100*365*24*time.Hour), 3); err != nil || len(none) != 0 {
		t.Fatalf("a forever decision expired: %+v, %v", none, err)
	}
	active, err := s.Active(ctx, now.Add(100*365*24*time.Hour))
	if err != nil || len(active) != 1 || !active[0].Until.IsZero() {
		t.Fatalf("active: %+v, %v", active, err)
	}
}

// TestListSince: since selects by creation time in the query.
func TestListSince(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s := open(t, pg.DSN())
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	if err := s.InsertDecisions(ctx, decisions(2, 0, until)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	split := time.Now()
	time.Sleep(5 * time.Millisecond)
	newer := decisions(3, 10, until)
	if err := s.InsertDecisions(ctx, newer); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ListDecisions(ctx, store.Filter{Since: split})
	if err != nil || len(recs) != 3 {
		t.Fatalf("since: %d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Created.Before(split) {
			t.Errorf("%s created %v, before %v", r.Value, r.Created, split)
		}
	}
	if n, err := s.CountMatching(ctx, store.Filter{Since: split, Origin: "list"}); err != nil || n != 3 {
		t.Errorf("count: %d, %v", n, err)
	}
}
