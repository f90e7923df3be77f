package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAllowlistBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-key.bad.yaml":   `testdata/allowlist/unknown-key.bad.yaml:3: allowlist entry: unknown key "colour" (want value, comment, expires)`,
		"no-value.bad.yaml":      `testdata/allowlist/no-value.bad.yaml:2: allowlist entry: a mapping needs value: (an address, range or hostname)`,
		"bad-expiry.bad.yaml":    `testdata/allowlist/bad-expiry.bad.yaml:2: allowlist entry: expires "next tuesday": want an RFC 3339 time (2027-01-01T00:00:00Z) or a date (2027-01-01)`,
		"nested-list.bad.yaml":   `testdata/allowlist/nested-list.bad.yaml:3: allowlist entry: want a value or a mapping {value, comment, expires}`,
		"bad-host.bad.yaml":      `testdata/allowlist/bad-host.bad.yaml:2: allowlist entry "-bad-.example.org": want an IP address or CIDR range (ParseAddr("-bad-.example.org"): unexpected character (at "-bad-.example.org"))`,
		"relative-file.bad.yaml": `testdata/allowlist/relative-file.bad.yaml:1: allowlist_files "allow.d/*.txt": want an absolute path or pattern`,
		"bad-resolver.bad.yaml":  `testdata/allowlist/bad-resolver.bad.yaml:2: allowlist_options resolver localhost: want address:port (not an ip:port)`,
	}
	files, err := filepath.Glob("testdata/allowlist/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d bad configs in testdata/allowlist, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			if got := err.Error(); got != want[filepath.Base(f)] {
				t.Errorf("error\n got %s\nwant %s", got, want[filepath.Base(f)])
			}
		})
	}
}

// The string form and the mapping form load side by side; only the
// addresses and ranges that never expire are static prefixes.
func TestAllowlistEntries(t *testing.T) {
	cfg, err := Load("testdata/allowlist/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := "testdata/allowlist/good.yaml"
	want := []AllowlistEntry{
		{Value: "198.18.0.1", File: f, Line: 3},
		{Value: "192.0.2.0/24", Comment: "office", File: f, Line: 4},
		{Value: "home.example.org", Comment: "admin at home", File: f, Line: 5},
		{Value: "2001:db8:1::/48", Comment: "contractor", Expires: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), File: f, Line: 7},
		{Value: "198.51.100.7", Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), File: f, Line: 10},
	}
	if d := cmp.Diff(want, cfg.AllowlistEntries()); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	wantP := []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("192.0.2.0/24")}
	if d := cmp.Diff(wantP, cfg.AllowlistPrefixes(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("static prefixes (-want +got):\n%s", d)
	}
	o := cfg.AllowlistOptions
	if o.Resolver != "127.0.0.1:5353" || o.ProtectSessions || o.UTMP != "/run/utmp" || len(cfg.AllowlistFiles) != 1 {
		t.Errorf("options %+v, files %v", o, cfg.AllowlistFiles)
	}
	if !Default().AllowlistOptions.ProtectSessions {
		t.Error("login sessions are not protected by default")
	}
}

func TestIsHostname(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"home.example.org", true},
		{"home.example.org.", true},
		{"localhost", true},
		{"a-b.c0", true},
		{"300.1.2.3", false},
		{"198.18.0.1", false},
		{"-a.example", false},
		{"a..example", false},
		{"a_b.example", false},
		{"", false},
	} {
		if got := IsHostname(c.s); got != c.ok {
			t.Errorf("IsHostname(%q) = %v, want %v", c.s, got, c.ok)
		}
	}
}

// TestAllowlistDocExamples: every YAML example of docs/allowlist.md loads.
func TestAllowlistDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/allowlist.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) != 4 {
		t.Fatalf("%d yaml examples in docs/allowlist.md, want 4", len(blocks))
	}
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		if _, err := Parse(fmt.Sprintf("docs/allowlist.md example %d", i+1), []byte(b)); err != nil {
			t.Errorf("%v", err)
		}
	}
}
