package model

import (
	"errors"
	"testing"
)

func TestParseGeoEntry(t *testing.T) {
	tests := []struct {
		in     string
		want   Geo
		isGeo  bool
		badGeo bool
	}{
		{"country:cn", Geo{ScopeCountry, "CN"}, true, false},
		{" Country:FR ", Geo{ScopeCountry, "FR"}, true, false},
		{"as:4134", Geo{ScopeAS, "4134"}, true, false},
		{"AS:as4134", Geo{ScopeAS, "4134"}, true, false},
		{"asn:AS64500", Geo{ScopeAS, "64500"}, true, false},
		{"as:4294967295", Geo{ScopeAS, "4294967295"}, true, false},
		{"country:CHN", Geo{}, true, true},
		{"country:C1", Geo{}, true, true},
		{"as:0", Geo{}, true, true},
		{"as:4294967296", Geo{}, true, true},
		{"as:+1", Geo{}, true, true},
		{"as:", Geo{}, true, true},
		{"198.51.100.7", Geo{}, false, false},
		{"2001:db8::1", Geo{}, false, false},
		{"::1", Geo{}, false, false},
		{"host.example", Geo{}, false, false},
	}
	for _, tt := range tests {
		g, ok, err := ParseGeoEntry(tt.in)
		if ok != tt.isGeo || (err != nil) != tt.badGeo || g != tt.want {
			t.Errorf("ParseGeoEntry(%q) = %+v, %v, %v", tt.in, g, ok, err)
		}
		if err != nil && !errors.Is(err, ErrBadGeo) {
			t.Errorf("ParseGeoEntry(%q): error %v does not wrap ErrBadGeo", tt.in, err)
		}
		if ok && err == nil {
			if back, _, _ := ParseGeoEntry(g.String()); back != g {
				t.Errorf("%q does not round trip: %q", tt.in, g.String())
			}
		}
	}
}

func TestGeoDecision(t *testing.T) {
	d := Decision{Geo: Geo{ScopeCountry, "CN"}}
	if d.ScopeName() != "Country" || d.ValueString() != "CN" || d.SingleAddr() {
		t.Errorf("country decision: scope %q value %q single %v", d.ScopeName(), d.ValueString(), d.SingleAddr())
	}
	if _, err := ParseGeo("city", "Paris"); !errors.Is(err, ErrBadGeo) {
		t.Errorf("scope city: %v", err)
	}
}

func TestParseDecisionValue(t *testing.T) {
	for in, want := range map[string]string{"CN": "country:CN", "4134": "as:4134", "198.51.100.7": "198.51.100.7", "2001:db8::/48": "2001:db8::/48"} {
		p, g, err := ParseDecisionValue(in)
		got := g.String()
		if g.IsZero() {
			got = ValueString(p)
		}
		if err != nil || got != want {
			t.Errorf("ParseDecisionValue(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "C", "0", "CHN", "1.2.3", "99999999999"} {
		if _, _, err := ParseDecisionValue(bad); err == nil {
			t.Errorf("ParseDecisionValue(%q) accepted", bad)
		}
	}
}
