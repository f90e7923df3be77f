package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// geoScoped: Country and AS decisions are stored by scope and value, read
// back with their target (list, active, stream, delete), and found by
// value and scope; no address filter finds them, their networks being the
// GeoIP database's.
func geoScoped(t *testing.T, s Store) {
	ctx := context.Background()
	start := stream(t, s, 0, false, 0).seq
	cn := model.Decision{Geo: model.Geo{Scope: model.ScopeCountry, Value: "CN"}, Type: "ban", Origin: model.OriginCLI, Scenario: "geo", Until: time.Now().Add(time.Hour)}
	as := model.Decision{Geo: model.Geo{Scope: model.ScopeAS, Value: "4134"}, Type: "ban", Origin: model.OriginCLI, Scenario: "geo"}
	plain := ban(ip("198.18.11.1"), model.OriginCLI, "geo", time.Time{})
	ds := []model.Decision{cn, as, plain}
	check(t, s.InsertDecisions(ctx, ds))
	cn, as, plain = ds[0], ds[1], ds[2]

	for _, tc := range []struct {
		name string
		f    store.Filter
		want []int64
	}{
		{"value", store.Filter{Value: "CN"}, []int64{cn.ID}},
		{"scope", store.Filter{Scope: "country"}, []int64{cn.ID}},
		{"scope as", store.Filter{Scope: "AS", Value: "4134"}, []int64{as.ID}},
		{"scenario", store.Filter{Scenario: "geo"}, []int64{plain.ID, as.ID, cn.ID}},
		{"address", store.Filter{IP: ip("198.18.11.1").Addr()}, []int64{plain.ID}},
	} {
		recs := ok(s.ListDecisions(ctx, tc.f))(t)
		if got := ids(recs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ListDecisions = %v, want %v", tc.name, got, tc.want)
		}
	}
	recs := ok(s.ListDecisions(ctx, store.Filter{ID: cn.ID}))(t)
	if len(recs) != 1 || recs[0].Geo != cn.Geo || recs[0].Value.IsValid() || recs[0].Scope() != "Country" {
		t.Errorf("Country decision read back as %+v", recs)
	}
	active := ok(s.Active(ctx, time.Now()))(t)
	found := 0
	for _, d := range active {
		if d.ID == as.ID && d.Geo == as.Geo || d.ID == cn.ID && d.Geo == cn.Geo {
			found++
		}
	}
	if found != 2 {
		t.Errorf("Active holds %d of the 2 geo decisions with their target: %+v", found, active)
	}
	wantIDs(t, "stream since the inserts", streamIDs(stream(t, s, start, false, 0)), []int64{cn.ID, as.ID, plain.ID})
	del := ok(s.DeleteIDs(ctx, []int64{as.ID}))(t)
	if len(del) != 1 || del[0].Geo != as.Geo {
		t.Errorf("DeleteIDs returned %+v, want the AS decision with its target (the kernel needs it)", del)
	}
	if n := ok(s.CountDecisions(ctx, "CN", time.Time{}))(t); n != 1 {
		t.Errorf("CountDecisions(CN) = %d, want 1", n)
	}
}
