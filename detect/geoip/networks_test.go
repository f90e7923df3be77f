package geoip_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

func TestNetworks(t *testing.T) {
	city, asn := testutil.WriteGeoIP(t, t.TempDir(), []testutil.GeoRecord{
		// Two halves of 198.51.100.0/24, different cities of one country:
		// merged into the /24.
		{Network: "198.51.100.0/25", Country: "CN", Latitude: 39.9, Longitude: 116.4, ASN: 4134},
		{Network: "198.51.100.128/25", Country: "CN", Latitude: 31.2, Longitude: 121.5, ASN: 4134},
		{Network: "203.0.113.0/26", Country: "CN", ASN: 4837},
		{Network: "203.0.113.64/26", Country: "FR", ASN: 4837},
		{Network: "2001:db8:1::/48", Country: "CN", ASN: 4134},
		{Network: "192.0.2.0/24", Country: "FR"},
	})
	db, err := geoip.Open(city, asn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c, a := db.IndexedNetworks(); c != 0 || a != 0 {
		t.Errorf("indexed before any question: %d, %d", c, a)
	}
	tests := []struct {
		scope, value string
		want         []string
	}{
		{"country", "cn", []string{"198.51.100.0/24", "203.0.113.0/26", "2001:db8:1::/48"}},
		{"country", "FR", []string{"192.0.2.0/24", "203.0.113.64/26"}},
		{"country", "DE", nil},
		{"as", "4134", []string{"198.51.100.0/24", "2001:db8:1::/48"}},
		{"as", "AS4837", []string{"203.0.113.0/25"}},
		{"as", "64512", nil},
	}
	for _, tt := range tests {
		t.Run(tt.scope+":"+tt.value, func(t *testing.T) {
			g, err := model.ParseGeo(tt.scope, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := db.Networks(g)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Networks(%v) = %v, want %v", g, got, tt.want)
			}
		})
	}
	if c, a := db.IndexedNetworks(); c != 5 || a != 3 {
		t.Errorf("IndexedNetworks = %d, %d; want 5, 3", c, a)
	}
}

func TestNetworksNeedTheirDatabase(t *testing.T) {
	city, _ := testutil.WriteGeoIP(t, t.TempDir(), []testutil.GeoRecord{{Network: "192.0.2.0/24", Country: "FR", ASN: 1}})
	db, err := geoip.Open(city, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Networks(model.Geo{Scope: model.ScopeAS, Value: "1"}); !errors.Is(err, geoip.ErrNoDatabase) {
		t.Errorf("AS networks without an ASN database: %v", err)
	}
	ps, err := db.Networks(model.Geo{Scope: model.ScopeCountry, Value: "FR"})
	if err != nil || !slices.Equal(ps, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) {
		t.Errorf("FR = %v, %v", ps, err)
	}
}
