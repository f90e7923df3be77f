package hubtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// geoMirror builds the databases the hub's GeoIP tests were written
// against, under the names of their source URLs: the test databases of
// the hub's own geoip-enrich copy (1.2.3.0/24 in France, AS 4242) and, for
// the parser's real URLs, what GeoLite2 says of the addresses the other
// tests use (1.2.3.4 in Australia, 9.8.8.8 in the United States, neither
// announced).
func geoMirror(t *testing.T) *Mirror {
	t.Helper()
	dir := t.TempDir()
	testutil.WriteGeoIPNamed(t, filepath.Join(dir, "GeoLite2-Test-City.mmdb"), filepath.Join(dir, "GeoLite2-Test-ASN.mmdb"), []testutil.GeoRecord{
		{Network: "1.2.3.0/24", Country: "FR", InEU: true, Latitude: 46, Longitude: 2, ASN: 4242, ASOrg: "Crowdsec"},
	})
	testutil.WriteGeoIPNamed(t, filepath.Join(dir, "GeoLite2-City.mmdb"), filepath.Join(dir, "GeoLite2-ASN.mmdb"), []testutil.GeoRecord{
		{Network: "1.2.3.0/24", Country: "AU", Latitude: -33.494, Longitude: 143.2104},
		{Network: "9.8.0.0/16", Country: "US", Latitude: 37.751, Longitude: -97.822},
	})
	m := NewMirror(dir)
	t.Cleanup(func() {
		if err := m.Err(); err != nil {
			t.Error(err)
		}
		m.Close()
	})
	return m
}

// TestGeoIPTests runs the hub tests that need GeoIP databases against the
// built ones, and checks that without them they fail for want of the
// fields (so a pass is the databases' doing).
func TestGeoIPTests(t *testing.T) {
	dir := sharedDir(t)
	names := []string{"geoip-enrich", "sshd-impossible-travel", "sftpgo-impossible-travel"}
	opts := hubOptions(dir)
	opts.Names = names
	opts.GeoIPFor = geoMirror(t).For
	results, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(names) {
		t.Fatalf("ran %d tests, want %d", len(results), len(names))
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("%s with GeoIP: %s", r.Name, r.Failure)
		}
	}
	opts.GeoIPFor = nil
	results, err = Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Pass {
			t.Errorf("%s passes without GeoIP databases", r.Name)
		}
	}
}
