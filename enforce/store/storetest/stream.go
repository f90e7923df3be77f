package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// streamed is what one Stream call emitted, as "+id" and "-id" in order.
type streamed struct {
	seq     int64
	changes []string
	pages   int
}

func stream(t *testing.T, s Store, after int64, startup bool, size int) streamed {
	t.Helper()
	var out streamed
	var err error
	out.seq, err = s.Stream(context.Background(), after, startup, time.Now(), size, func(c store.Change, rs []store.Record) error {
		out.pages++
		for _, r := range rs {
			sign := "+"
			if c == store.Deleted {
				sign = "-"
			}
			if !r.Value.IsValid() && r.Geo.IsZero() || r.Type == "" {
				return fmt.Errorf("record %d streamed without value or type: %+v", r.ID, r)
			}
			out.changes = append(out.changes, fmt.Sprint(sign, r.ID))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantChanges(t *testing.T, what string, got streamed, want ...string) {
	t.Helper()
	if fmt.Sprint(got.changes) != fmt.Sprint(want) {
		t.Errorf("%s: streamed %v, want %v", what, got.changes, want)
	}
}

func addr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
}

func insertN(t *testing.T, s Store, from, n int, until time.Time) []model.Decision {
	t.Helper()
	ds := make([]model.Decision, n)
	for i := range ds {
		ds[i] = ban(addr(from+i), model.OriginList, "list", until)
	}
	check(t, s.InsertDecisions(context.Background(), ds))
	return ds
}

func plus(ds ...model.Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprint("+", d.ID)
	}
	return out
}

// streamOrder: a startup pull lists what is active in ID order; a delta
// lists what was added since, in commit order, then what was deleted; a
// decision added and deleted within the delta shows in neither; the
// sequence only grows.
func streamOrder(t *testing.T, s Store) {
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	first := insertN(t, s, 1, 3, until)
	start := stream(t, s, 0, true, 0)
	wantChanges(t, "startup", start, plus(first...)...)
	if start.seq <= 0 {
		t.Fatalf("startup at sequence %d", start.seq)
	}
	if again := stream(t, s, start.seq, false, 0); len(again.changes) != 0 || again.seq != start.seq {
		t.Errorf("delta with nothing new: %v at %d (was %d)", again.changes, again.seq, start.seq)
	}
	// Two commits; the second's decision was reserved first, so its ID is
	// lower: commit order, not ID order, is the delta's.
	early := s.ReserveIDs(1)
	later := insertN(t, s, 10, 2, until)
	one := []model.Decision{ban(addr(20), model.OriginCLI, "", until)}
	one[0].ID = early
	check(t, s.InsertDecisions(ctx, one))
	gone := ok(s.DeleteIDs(ctx, []int64{first[1].ID}))(t)
	wantIDs(t, "DeleteIDs", decisionIDs(gone), []int64{first[1].ID})
	brief := insertN(t, s, 30, 1, until)
	ok(s.DeleteIDs(ctx, []int64{brief[0].ID}))(t)
	delta := stream(t, s, start.seq, false, 0)
	want := append(plus(later[0], later[1], one[0]), fmt.Sprint("-", first[1].ID))
	wantChanges(t, "delta", delta, want...)
	if delta.seq <= start.seq {
		t.Errorf("sequence went from %d to %d", start.seq, delta.seq)
	}
	// A startup pull now: the active ones, by ID.
	wantChanges(t, "second startup", stream(t, s, 0, true, 0), plus(first[0], first[2], one[0], later[0], later[1])...)
	// A bouncer that saw the delta sees nothing more.
	if last := stream(t, s, delta.seq, false, 0); len(last.changes) != 0 {
		t.Errorf("delta after the last: %v", last.changes)
	}
}

// streamPaged: pages of a few rows add up to the same stream.
func streamPaged(t *testing.T, s Store) {
	until := time.Now().Add(time.Hour)
	base := stream(t, s, 0, true, 0).seq
	ds := insertN(t, s, 1, 7, until)
	more := insertN(t, s, 100, 4, until)
	ok(s.DeleteIDs(context.Background(), []int64{ds[0].ID, ds[6].ID, more[1].ID}))(t)
	full := stream(t, s, 0, true, 0)
	paged := stream(t, s, 0, true, 2)
	wantChanges(t, "startup in pages of 2", paged, full.changes...)
	if paged.pages != 4 || len(full.changes) != 8 {
		t.Errorf("startup: %d pages of 2 for %d decisions, want 4 for 8", paged.pages, len(full.changes))
	}
	fullDelta := stream(t, s, base, false, 0)
	pagedDelta := stream(t, s, base, false, 3)
	wantChanges(t, "delta in pages of 3", pagedDelta, fullDelta.changes...)
	if len(fullDelta.changes) != 8 {
		t.Errorf("delta from an empty store: %v, want 8 added", fullDelta.changes)
	}
}

// deleteCase: an empty filter deletes nothing, filters and IDs delete what
// they select once, DeleteAll the rest; history keeps them.
func deleteCase(t *testing.T, s Store) {
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	ds := insertN(t, s, 1, 5, until)
	rng := []model.Decision{ban(netip.MustParsePrefix("198.19.0.0/16"), model.OriginCLI, "", until)}
	check(t, s.InsertDecisions(ctx, rng))
	if got := ok(s.DeleteDecisions(ctx, store.Filter{}))(t); len(got) != 0 {
		t.Fatalf("empty filter deleted %d", len(got))
	}
	got := ok(s.DeleteDecisions(ctx, store.Filter{IP: netip.MustParseAddr("198.19.4.4")}))(t)
	wantIDs(t, "delete by covered IP", decisionIDs(got), []int64{rng[0].ID})
	got = ok(s.DeleteDecisions(ctx, store.Filter{Value: model.ValueString(ds[0].Value)}))(t)
	wantIDs(t, "delete by value", decisionIDs(got), []int64{ds[0].ID})
	got = ok(s.DeleteIDs(ctx, []int64{ds[1].ID, ds[0].ID, 1 << 40}))(t)
	wantIDs(t, "delete IDs (one already deleted, one unknown)", decisionIDs(got), []int64{ds[1].ID})
	got = ok(s.DeleteAll(ctx))(t)
	wantIDs(t, "delete all", decisionIDs(got), []int64{ds[2].ID, ds[3].ID, ds[4].ID})
	if got := ok(s.DeleteAll(ctx))(t); len(got) != 0 {
		t.Errorf("second DeleteAll: %d", len(got))
	}
	if act := ok(s.Active(ctx, time.Now()))(t); len(act) != 0 {
		t.Errorf("active after DeleteAll: %v", act)
	}
	hist := ok(s.ListDecisions(ctx, store.Filter{History: true}))(t)
	if len(hist) != 6 {
		t.Fatalf("history: %d decisions, want 6", len(hist))
	}
	for _, r := range hist {
		if r.Deleted.IsZero() {
			t.Errorf("decision %d in history without a deletion time", r.ID)
		}
	}
}

// expire: only decisions whose end passed are marked, once, and streams
// report them deleted.
func expire(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Now()
	past := insertN(t, s, 1, 3, now.Add(-time.Second))
	future := insertN(t, s, 10, 1, now.Add(time.Hour))
	never := insertN(t, s, 20, 1, time.Time{})
	base := stream(t, s, 0, true, 0)
	wantChanges(t, "startup leaves out the expired", base, plus(future[0], never[0])...)
	if n := ok(s.Expire(ctx, now))(t); n != 3 {
		t.Fatalf("Expire marked %d, want 3", n)
	}
	if n := ok(s.Expire(ctx, now))(t); n != 0 {
		t.Errorf("second Expire marked %d, want 0", n)
	}
	delta := stream(t, s, base.seq, false, 0)
	wantChanges(t, "delta", delta, fmt.Sprint("-", past[0].ID), fmt.Sprint("-", past[1].ID), fmt.Sprint("-", past[2].ID))
	act := ok(s.Active(ctx, now))(t)
	if len(act) != 2 || act[0].ID != future[0].ID || act[1].ID != never[0].ID {
		t.Errorf("Active: %v", act)
	}
	hist := ok(s.ListDecisions(ctx, store.Filter{History: true, Value: model.ValueString(past[0].Value)}))(t)
	if len(hist) != 1 || !hist[0].Deleted.Equal(past[0].Until) {
		t.Errorf("expired decision's deletion time: %+v, want its end %v", hist, past[0].Until)
	}
	if n := ok(s.Expire(ctx, now.Add(2*time.Hour)))(t); n != 1 {
		t.Errorf("Expire later marked %d, want 1 (the never-ending one stays)", n)
	}
}
