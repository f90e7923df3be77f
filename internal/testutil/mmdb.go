package testutil

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// GeoRecord is one network of a test GeoIP database. A record with no
// Country and no coordinates is left out of the City database, one with
// ASN 0 out of the ASN database, so tests can make an address unknown to
// either.
type GeoRecord struct {
	Network   string // CIDR
	Country   string // ISO code
	InEU      bool
	Latitude  float64
	Longitude float64
	ASN       uint32
	ASOrg     string
}

// WriteGeoIP writes a City and an ASN database in the MaxMind DB format
// holding recs into dir, named as GeoLite2's, and returns their paths.
func WriteGeoIP(tb testing.TB, dir string, recs []GeoRecord) (city, asn string) {
	tb.Helper()
	return WriteGeoIPNamed(tb, filepath.Join(dir, "GeoLite2-City.mmdb"), filepath.Join(dir, "GeoLite2-ASN.mmdb"), recs)
}

// WriteGeoIPNamed is WriteGeoIP with the two file paths chosen.
func WriteGeoIPNamed(tb testing.TB, city, asn string, recs []GeoRecord) (string, string) {
	tb.Helper()
	ct := newTree(tb, "GeoLite2-City")
	at := newTree(tb, "GeoLite2-ASN")
	for _, r := range recs {
		_, n, err := net.ParseCIDR(r.Network)
		if err != nil {
			tb.Fatalf("testutil: geo record %q: %v", r.Network, err)
		}
		if r.Country != "" || r.Latitude != 0 || r.Longitude != 0 {
			rec := mmdbtype.Map{
				"location": mmdbtype.Map{
					"latitude":  mmdbtype.Float64(r.Latitude),
					"longitude": mmdbtype.Float64(r.Longitude),
				},
			}
			if r.Country != "" {
				rec["country"] = mmdbtype.Map{
					"iso_code":             mmdbtype.String(r.Country),
					"is_in_european_union": mmdbtype.Bool(r.InEU),
				}
			}
			if err := ct.Insert(n, rec); err != nil {
				tb.Fatalf("testutil: city %s: %v", r.Network, err)
			}
		}
		if r.ASN != 0 {
			rec := mmdbtype.Map{
				"autonomous_system_number":       mmdbtype.Uint32(r.ASN),
				"autonomous_system_organization": mmdbtype.String(r.ASOrg),
			}
			if err := at.Insert(n, rec); err != nil {
				tb.Fatalf("testutil: asn %s: %v", r.Network, err)
			}
		}
	}
	writeTree(tb, ct, city)
	writeTree(tb, at, asn)
	return city, asn
}

func newTree(tb testing.TB, typ string) *mmdbwriter.Tree {
	tb.Helper()
	t, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: typ, IncludeReservedNetworks: true, RecordSize: 28})
	if err != nil {
		tb.Fatalf("testutil: mmdb tree: %v", err)
	}
	return t
}

func writeTree(tb testing.TB, t *mmdbwriter.Tree, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := t.WriteTo(f); err != nil {
		f.Close()
		tb.Fatalf("testutil: write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}
