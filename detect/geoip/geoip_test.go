package geoip_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/internal/testutil"
)

func openTest(t *testing.T) *geoip.DB {
	t.Helper()
	city, asn := testutil.WriteGeoIP(t, t.TempDir(), []testutil.GeoRecord{
		{Network: "1.2.3.0/24", Country: "FR", InEU: true, Latitude: 46, Longitude: 2, ASN: 4242, ASOrg: "Crowdsec"},
		{Network: "9.8.0.0/16", Country: "US", Latitude: 37.75, Longitude: -97.8},
		{Network: "2001:db8::/32", Country: "DE", InEU: true, ASN: 64500, ASOrg: "Doc"},
	})
	db, err := geoip.Open(city, asn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestLookups(t *testing.T) {
	db := openTest(t)
	tests := []struct {
		ip   string
		city geoip.City
		asn  geoip.ASN
		rng  string // "" when not in the ASN database
	}{
		{"1.2.3.4", geoip.City{IsoCode: "FR", InEU: true, Latitude: 46, Longitude: 2}, geoip.ASN{Number: 4242, Org: "Crowdsec"}, "1.2.3.0/24"},
		{"::ffff:1.2.3.9", geoip.City{IsoCode: "FR", InEU: true, Latitude: 46, Longitude: 2}, geoip.ASN{Number: 4242, Org: "Crowdsec"}, "1.2.3.0/24"},
		{"9.8.8.8", geoip.City{IsoCode: "US", Latitude: 37.75, Longitude: -97.8}, geoip.ASN{}, ""},
		{"2001:db8::1", geoip.City{IsoCode: "DE", InEU: true}, geoip.ASN{Number: 64500, Org: "Doc"}, "2001:db8::/32"},
		{"5.5.5.5", geoip.City{}, geoip.ASN{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			c, err := db.City(ip)
			if err != nil || c != tt.city {
				t.Errorf("City = %+v, %v; want %+v", c, err, tt.city)
			}
			a, err := db.ASN(ip)
			if err != nil || a != tt.asn {
				t.Errorf("ASN = %+v, %v; want %+v", a, err, tt.asn)
			}
			p, ok, err := db.Range(ip)
			got := ""
			if ok {
				got = p.String()
			}
			if err != nil || got != tt.rng {
				t.Errorf("Range = %q, %v; want %q", got, err, tt.rng)
			}
			if db.Country(ip) != tt.city.IsoCode || db.ASNumber(ip) != tt.asn.Number {
				t.Errorf("Country/ASNumber = %q/%d", db.Country(ip), db.ASNumber(ip))
			}
		})
	}
}

func TestMissingDatabases(t *testing.T) {
	db, err := geoip.Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("1.2.3.4")
	if _, err := db.City(ip); !errors.Is(err, geoip.ErrNoDatabase) {
		t.Errorf("City without database: %v", err)
	}
	if _, err := db.ASN(ip); !errors.Is(err, geoip.ErrNoDatabase) {
		t.Errorf("ASN without database: %v", err)
	}
	if db.Country(ip) != "" {
		t.Error("Country without database is not empty")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	city, asn := testutil.WriteGeoIP(t, dir, []testutil.GeoRecord{{Network: "1.2.3.0/24", Country: "FR", ASN: 1}})
	for name, paths := range map[string][2]string{
		"missing file":      {filepath.Join(dir, "nope.mmdb"), ""},
		"asn file for city": {asn, ""},
		"city file for asn": {"", city},
	} {
		if db, err := geoip.Open(paths[0], paths[1]); err == nil {
			db.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}
