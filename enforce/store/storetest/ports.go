package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// portScoped: a decision's ports and protocol survive the store (list and
// delete return them), and no bouncer stream carries the decision, neither
// its addition nor its deletion.
func portScoped(t *testing.T, s Store) {
	ctx := context.Background()
	start := stream(t, s, 0, false, 0).seq
	scoped := ban(ip("198.18.9.1"), model.OriginCLI, "manual", time.Now().Add(time.Hour))
	scoped.Ports, scoped.Protocol = []uint16{25, 465}, "tcp"
	both := ban(ip("2001:db8::9"), model.OriginCLI, "manual", time.Time{})
	both.Ports = []uint16{53}
	plain := ban(ip("198.18.9.2"), model.OriginCLI, "manual", time.Time{})
	ds := []model.Decision{scoped, both, plain}
	check(t, s.InsertDecisions(ctx, ds))
	scoped, both, plain = ds[0], ds[1], ds[2]

	recs := ok(s.ListDecisions(ctx, store.Filter{Scenario: "manual"}))(t)
	got := map[int64]model.Decision{}
	for _, r := range recs {
		got[r.ID] = r.Decision
	}
	for _, want := range ds {
		g := got[want.ID]
		if !slices.Equal(g.Ports, want.Ports) || g.Protocol != want.Protocol {
			t.Errorf("decision %d read back with ports %v/%q, want %v/%q", want.ID, g.Ports, g.Protocol, want.Ports, want.Protocol)
		}
	}

	wantIDs(t, "stream since the inserts", streamIDs(stream(t, s, start, false, 0)), []int64{plain.ID})
	startup := streamIDs(stream(t, s, 0, true, 0))
	if slices.Contains(startup, scoped.ID) || slices.Contains(startup, both.ID) || !slices.Contains(startup, plain.ID) {
		t.Errorf("startup stream %v: want %d and neither port-scoped decision", startup, plain.ID)
	}

	mid := stream(t, s, 0, false, 0).seq
	del := ok(s.DeleteIDs(ctx, []int64{scoped.ID}))(t)
	if len(del) != 1 || !slices.Equal(del[0].Ports, scoped.Ports) || del[0].Protocol != "tcp" {
		t.Errorf("DeleteIDs returned %+v, want the decision with its ports (the kernel needs them to remove it)", del)
	}
	if after := stream(t, s, mid, false, 0); len(after.changes) != 0 {
		t.Errorf("stream after deleting a port-scoped decision: %v, want nothing", after.changes)
	}
}

func streamIDs(st streamed) []int64 {
	var ids []int64
	for _, c := range st.changes {
		var id int64
		for _, ch := range c[1:] {
			id = id*10 + int64(ch-'0')
		}
		ids = append(ids, id)
	}
	return ids
}
