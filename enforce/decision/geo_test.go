package decision

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// A Country or AS decision is refused at add time, before it is stored,
// when no database can expand it; with one, it is stored and enforced,
// and the allowlist does not refuse it whole (the kernel bans around
// what it protects).
func TestAddGeoDecisions(t *testing.T) {
	needCity := errors.New("set geoip.city")
	tests := []struct {
		name    string
		check   func(model.Geo) error
		d       model.Decision
		wantErr error
	}{
		{"no check configured", nil, model.Decision{Geo: model.Geo{Scope: "Country", Value: "CN"}}, enforce.ErrNoGeoIP},
		{"database missing", func(model.Geo) error { return needCity }, model.Decision{Geo: model.Geo{Scope: "Country", Value: "CN"}}, needCity},
		{"bad country", func(model.Geo) error { return nil }, model.Decision{Geo: model.Geo{Scope: "Country", Value: "CHN"}}, model.ErrBadGeo},
		{"with ports", func(model.Geo) error { return nil }, model.Decision{Geo: model.Geo{Scope: "AS", Value: "4134"}, Ports: []uint16{22}}, ErrInvalid},
		{"with a value too", func(model.Geo) error { return nil }, model.Decision{Geo: model.Geo{Scope: "AS", Value: "4134"}, Value: netip.MustParsePrefix("192.0.2.0/24")}, ErrInvalid},
		{"ok", func(model.Geo) error { return nil }, model.Decision{Geo: model.Geo{Scope: "Country", Value: "cn"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enf := newFake()
			// The allowlist holds an address of the country: the
			// decision is not refused for it.
			svc := newService(t, enf, netip.MustParsePrefix("192.0.2.7/32"))
			svc.GeoCheck = tt.check
			d := tt.d
			d.Type, d.Origin, d.Until = "ban", model.OriginCLI, time.Now().Add(time.Hour)
			ds := []model.Decision{d}
			err := svc.Add(context.Background(), ds)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := enf.held[ds[0].ID]; got.Geo != (model.Geo{Scope: "Country", Value: "CN"}) {
					t.Errorf("enforced %+v, want the country in canonical form", got)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Errorf("Add = %v, want %v and ErrInvalid", err, tt.wantErr)
			}
			if rs, _ := svc.List(context.Background(), store.Filter{History: true}); len(rs) != 0 {
				t.Errorf("a refused decision was stored: %+v", rs)
			}
		})
	}
}
