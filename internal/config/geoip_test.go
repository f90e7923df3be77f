package config

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// Every GeoIP configuration error names the file and line, and the
// database file when there is one.
func TestGeoIPBadConfigs(t *testing.T) {
	want := map[string]string{
		"relative.bad.yaml":          `testdata/geoip/relative.bad.yaml:2: geoip.city "GeoLite2-City.mmdb": want an absolute path`,
		"missing.bad.yaml":           `testdata/geoip/missing.bad.yaml:3: geoip.city "/nonexistent/moat-test/GeoLite2-City.mmdb": no such file (moat never downloads GeoIP databases: install them, with geoipupdate for instance)`,
		"dir.bad.yaml":               `testdata/geoip/dir.bad.yaml:3: geoip.asn "/": not a regular file`,
		"unknown-key.bad.yaml":       `testdata/geoip/unknown-key.bad.yaml:2: unknown key "country"`,
		"allow-no-city.bad.yaml":     `testdata/geoip/allow-no-city.bad.yaml:3: allowlist entry "country:FR": no GeoIP database configured: country entries and decisions need a City database; set geoip.city in moat.yaml`,
		"allow-as-no-asn.bad.yaml":   `testdata/geoip/allow-as-no-asn.bad.yaml:4: allowlist entry "as:64500": no GeoIP database configured: AS entries and decisions need an ASN database; set geoip.asn in moat.yaml`,
		"allow-bad-country.bad.yaml": `testdata/geoip/allow-bad-country.bad.yaml:4: allowlist entry "country:FRA": bad country or AS: country "FRA": want a two-letter ISO 3166-1 code such as CN`,
	}
	checkBadConfigs(t, "testdata/geoip", want)
}

// A configuration naming databases that exist loads; the allowlist's
// country and AS entries are kept out of the prefixes, and an error met
// opening a database is placed at its key.
func TestGeoIPGood(t *testing.T) {
	city, asn := testutil.WriteGeoIP(t, t.TempDir(), []testutil.GeoRecord{{Network: "192.0.2.0/24", Country: "FR", ASN: 64500}})
	data := "geoip:\n  city: " + strconv.Quote(city) + "\n  asn: " + strconv.Quote(asn) + "\nallowlist:\n  - country:fr\n  - as:AS64500\n  - 198.51.100.7\n"
	cfg, err := Parse("moat.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckPaths(); err != nil {
		t.Fatal(err)
	}
	if !cfg.GeoIP.Enabled() || cfg.GeoIP.City != city || cfg.GeoIP.ASN != asn {
		t.Errorf("GeoIP = %+v", cfg.GeoIP)
	}
	if got := cfg.AllowlistPrefixes(); len(got) != 1 || got[0].String() != "198.51.100.7/32" {
		t.Errorf("AllowlistPrefixes = %v, want the address alone", got)
	}
	if err := cfg.GeoIP.Need(model.Geo{Scope: model.ScopeAS, Value: "1"}); err != nil {
		t.Errorf("Need AS with an ASN database: %v", err)
	}
	err = cfg.GeoIPError("asn", errors.New("invalid MaxMind DB file"))
	if want := "moat.yaml:3: geoip.asn " + strconv.Quote(asn) + ": invalid MaxMind DB file"; err.Error() != want {
		t.Errorf("GeoIPError = %s\nwant %s", err, want)
	}
	if out, err := cfg.Marshal(); err != nil {
		t.Fatal(err)
	} else if back, err := Parse("rt.yaml", out); err != nil || back.GeoIP != cfg.GeoIP {
		t.Errorf("round trip: %+v, %v", back.GeoIP, err)
	}
	if Default().GeoIP.Enabled() {
		t.Error("GeoIP is on by default")
	}
}

// An unreadable database is refused at start, naming it.
func TestGeoIPUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	city, _ := testutil.WriteGeoIP(t, t.TempDir(), []testutil.GeoRecord{{Network: "192.0.2.0/24", Country: "FR"}})
	if err := os.Chmod(city, 0); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("moat.yaml", []byte("geoip:\n  city: "+strconv.Quote(city)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.CheckPaths()
	if err == nil {
		t.Fatal("CheckPaths accepted an unreadable database")
	}
	if want := "moat.yaml:2: geoip.city: open " + city + ": permission denied"; err.Error() != want {
		t.Errorf("error %s\nwant %s", err, want)
	}
}
