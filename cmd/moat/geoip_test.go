package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// A GeoIP database that is missing, not a database, or of the wrong kind
// stops moat config check (and moat run, which loads the same) with a
// configuration error naming the file and its line; a good one loads.
func TestGeoIPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	city, asn := testutil.WriteGeoIP(t, dir, []testutil.GeoRecord{{Network: "192.0.2.0/24", Country: "FR", ASN: 64500}})
	corrupt := filepath.Join(dir, "corrupt.mmdb")
	must(t, os.WriteFile(corrupt, []byte("this is no MaxMind database\n"), 0o644))
	root := repoRoot(t)
	tests := []struct {
		name      string
		city, asn string
		want      []string // in stderr; none: the check passes
	}{
		{"good", city, asn, nil},
		{"missing", filepath.Join(dir, "GeoLite2-Country.mmdb"), "", []string{"moat.yaml:", "geoip.city " + strconv.Quote(filepath.Join(dir, "GeoLite2-Country.mmdb")) + ": no such file"}},
		{"corrupt", "", corrupt, []string{"moat.yaml:", "geoip.asn " + strconv.Quote(corrupt) + ": ", "invalid MaxMind DB"}},
		{"asn for city", asn, "", []string{"moat.yaml:", "geoip.city " + strconv.Quote(asn) + `: database type "GeoLite2-ASN" is not a City database`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "moat.yaml")
			data := daemonConfig(filepath.Dir(cfg), root, filepath.Join(root, "packaging", "acquis.d")) +
				"geoip:\n  city: " + strconv.Quote(tt.city) + "\n  asn: " + strconv.Quote(tt.asn) + "\n"
			must(t, os.WriteFile(cfg, []byte(data), 0o644))
			code, _, errOut := runMoat(t, "", "config", "check", "-c", cfg)
			if tt.want == nil {
				if code != exitOK {
					t.Fatalf("config check: exit %d\n%s", code, errOut)
				}
				return
			}
			if code != exitUsage {
				t.Errorf("config check: exit %d, want %d (a configuration error)\n%s", code, exitUsage, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// Without a daemon, the CLI refuses a bad country or scope itself.
func TestDecisionsAddGeoUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--scope", "country", "--value", "CHN"},
		{"--scope", "as", "--value", "0"},
		{"--scope", "city", "--value", "Paris"},
		{"--scope", "country", "--value", "CN", "--ip", "192.0.2.1"},
		{"--value", "CN"},
	} {
		code, _, errOut := runMoat(t, "", append([]string{"decisions", "add", "-c", "/nonexistent/moat.yaml"}, args...)...)
		if code != exitUsage || errOut == "" {
			t.Errorf("decisions add %v: exit %d %q, want a usage error", args, code, errOut)
		}
	}
}
