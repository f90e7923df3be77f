package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/yamlerr"
	"github.com/moatsec/moat/packaging"
)

func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-key.bad.yaml":       `testdata/unknown-key.bad.yaml:4: unknown key "lisen"`,
		"store-dsn.bad.yaml":         `testdata/store-dsn.bad.yaml:3: store dsn must be a postgres:// URL (or empty for the SQLite file in state_dir)`,
		"wrong-type.bad.yaml":        "testdata/wrong-type.bad.yaml:2: cannot unmarshal !!str `many` into int",
		"bad-allowlist.bad.yaml":     `testdata/bad-allowlist.bad.yaml:3: allowlist entry "300.1.2.3": want an IP address or CIDR range (ParseAddr("300.1.2.3"): IPv4 field has value >255)`,
		"bad-hook.bad.yaml":          `testdata/bad-hook.bad.yaml:3: nftables hook "forward": want prerouting or input`,
		"bad-listen.bad.yaml":        `testdata/bad-listen.bad.yaml:2: localhost: want address:port (not an ip:port)`,
		"xdp-no-interfaces.bad.yaml": `testdata/xdp-no-interfaces.bad.yaml:3: xdp is enabled but lists no interfaces`,
		"syntax.bad.yaml":            `testdata/syntax.bad.yaml:1: did not find expected ',' or ']'`,
		"bad-level.bad.yaml":         `testdata/bad-level.bad.yaml:1: log_level "loud": want debug, info, warn or error`,
		"wide-allowlist.bad.yaml":    `testdata/wide-allowlist.bad.yaml:3: allowlist entry "0.0.0.0/0": 0.0.0.0/0 is wider than /8, the limit for IPv4 ranges; set allowlist_allow_wide: true to accept it`,
		"wide-allowlist6.bad.yaml":   `testdata/wide-allowlist6.bad.yaml:3: allowlist entry "::/0": ::/0 is wider than /32, the limit for IPv6 ranges; set allowlist_allow_wide: true to accept it`,
		// Drift repair: off is 0, said plainly; below zero is a mistake.
		"negative-verify-interval.bad.yaml": `testdata/negative-verify-interval.bad.yaml:4: verify_interval -1m0s: want 0 (no drift repair) or at least 1s`,
		"tiny-verify-interval.bad.yaml":     `testdata/tiny-verify-interval.bad.yaml:2: verify_interval 10ms: want 0 (no drift repair) or at least 1s`,
		"short-alert-retention.bad.yaml":    `testdata/short-alert-retention.bad.yaml:3: alert_retention 10m0s: want at least 1h`,
		"negative-max-alerts.bad.yaml":      `testdata/negative-max-alerts.bad.yaml:3: max_alerts -1: want 0 (no cap) or more`,
		// Content directories that do not exist must not fall back.
		"missing-hub-dir.bad.yaml":         `testdata/missing-hub-dir.bad.yaml:3: hub.dir "/etc/moat/hbu": no such directory (only the default /etc/moat/hub falls back to the packaged content)`,
		"missing-acquisition-dir.bad.yaml": `testdata/missing-acquisition-dir.bad.yaml:4: acquisition.dir "/etc/moat/acquis.dd": no such directory (only the default /etc/moat/acquis.d falls back to the packaged content)`,
		"patterns-not-dir.bad.yaml":        `testdata/patterns-not-dir.bad.yaml:2: hub.patterns "testdata/syntax.bad.yaml": not a directory`,
		// A long value or key is quoted in part, never whole.
		"long-value.bad.yaml": `testdata/long-value.bad.yaml:1: log_level "` + strings.Repeat("x", 64) + `..." (5000 bytes): want debug, info, warn or error`,
		"long-key.bad.yaml":   `testdata/long-key.bad.yaml:2: unknown key "` + strings.Repeat("k", 64) + `..." (1000 bytes)`,
		// The fleet server role.
		"server-no-tls.bad.yaml":      `testdata/server-no-tls.bad.yaml:3: 0.0.0.0:8089 is not loopback: set tls cert and key, or machine passwords and tokens cross the network in clear`,
		"server-lifetime.bad.yaml":    `testdata/server-lifetime.bad.yaml:3: jwt_lifetime 10s: want 0 (2h) or between 1m and 720h`,
		"server-half-tls.bad.yaml":    `testdata/server-half-tls.bad.yaml:5: tls needs both cert and key`,
		"server-unknown-key.bad.yaml": `testdata/server-unknown-key.bad.yaml:3: unknown key "jwt_lifetme"`,
		"server-no-listener.bad.yaml": `testdata/server-no-listener.bad.yaml:4: server is enabled but neither server.listen nor api.listen is set`,
	}
	checkBadConfigs(t, "testdata", want)
}

func TestShippedConfigIsTheDefault(t *testing.T) {
	cfg, err := Parse("moat.yaml", packaging.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	def.Source = "moat.yaml"
	if diff := cmp.Diff(def, cfg, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(Config{})); diff != "" {
		t.Fatalf("the shipped moat.yaml and Default() disagree (-Default +moat.yaml):\n%s", diff)
	}
}

func TestRoundTrip(t *testing.T) {
	in := Default()
	in.Allowlist = []string{"198.18.0.0/24", "2001:db8::/48"}
	in.Enforce.BatchWindow = 3 * time.Millisecond
	in.Store = StoreConf{AlertRetention: 48 * time.Hour, MaxAlerts: 5000}
	in.Enforce.XDP = XDPConf{Enabled: true, Interfaces: []string{"eth0"}, PinDir: "/sys/fs/bpf/moat", MaxSingles: 10, MaxRanges: 5}
	out, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("rt.yaml", out)
	if err != nil {
		t.Fatalf("parse marshalled config: %v\n%s", err, out)
	}
	in.Source = "rt.yaml"
	if diff := cmp.Diff(in, got, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(Config{})); diff != "" {
		t.Fatalf("round trip changed the config:\n%s", diff)
	}
}

// Wide allowlist entries load only with the explicit override; entries at
// the limit need none.
func TestAllowlistWidth(t *testing.T) {
	for _, c := range []struct {
		yaml string
		ok   bool
	}{
		{"allowlist: [198.0.0.0/8, 2001:db8::/32]\n", true},
		{"allowlist: [198.0.0.0/7]\n", false},
		{"allowlist: [2001:db8::/31]\n", false},
		{"allowlist: [\"::ffff:0.0.0.0/96\"]\n", false},
		{"allowlist: [0.0.0.0/0]\nallowlist_allow_wide: false\n", false},
		{"allowlist: [0.0.0.0/0, \"::/0\"]\nallowlist_allow_wide: true\n", true},
	} {
		cfg, err := Parse("moat.yaml", []byte(c.yaml))
		if c.ok && err != nil {
			t.Errorf("%q: %v", c.yaml, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "allowlist_allow_wide")) {
			t.Errorf("%q: err = %v, want a refusal naming allowlist_allow_wide (allowlist %v)", c.yaml, err, cfg.AllowlistPrefixes())
		}
	}
}

// The shipped config names the default directories, which need not exist:
// they fall back. A directory that exists passes wherever it is.
func TestCheckPathsDefaults(t *testing.T) {
	cfg, err := Parse("moat.yaml", packaging.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckPaths(); err != nil {
		t.Fatalf("the shipped config fails CheckPaths: %v", err)
	}
	dir := t.TempDir()
	cfg, err = Parse("moat.yaml", []byte("hub:\n  dir: "+dir+"\n  patterns: "+dir+"\nacquisition:\n  dir: "+dir+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckPaths(); err != nil {
		t.Fatalf("existing directories fail CheckPaths: %v", err)
	}
}

// A huge file (a log named by mistake) is refused after reading at most
// the limit, and the error quotes none of it.
func TestLoadHugeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50 MB")
	}
	path := filepath.Join(t.TempDir(), "moat.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Valid YAML all the way: a decoder that got to read it would accept
	// it up to the unknown key.
	line := []byte("# " + strings.Repeat("a", 1021) + "\n")
	for range 50 << 10 {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteString("log_level: " + strings.Repeat("v", 1<<20) + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = Load(path)
	runtime.ReadMemStats(&after)
	want := path + ": larger than 1 MiB, the limit for this kind of file"
	if err == nil || err.Error() != want {
		t.Fatalf("Load = %v, want %s", err, want)
	}
	if !errors.Is(err, yamlerr.ErrTooLarge) {
		t.Errorf("error does not wrap ErrTooLarge: %v", err)
	}
	// Reading it whole would allocate 50 MB at least; the limit lets
	// through 1 MiB and the buffer growth around it.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("Load allocated %d MiB for a file it refuses, want at most 8", alloc>>20)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("Load of a missing file = %v, want ErrNotExist", err)
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1":            "198.18.0.1/32",
		"198.18.3.9/16":         "198.18.0.0/16",
		"2001:db8::1":           "2001:db8::1/128",
		"::ffff:198.18.0.1":     "198.18.0.1/32",
		"::ffff:198.18.0.0/112": "198.18.0.0/16",
		"::ffff:0:0/80":         "::/80",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"198.18.0.0/33", "fe80::1%eth0"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix accepted %q", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(packaging.DefaultConfig)
	for _, name := range []string{"unknown-key", "wrong-type", "syntax"} {
		if b, err := os.ReadFile("testdata/" + name + ".bad.yaml"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error of type %T, want *config.Error: %v", err, err)
			}
			return
		}
		// Whatever parses must validate again after a round trip.
		out, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("rt.yaml", out); err != nil {
			t.Fatalf("valid config does not survive a round trip: %v\n%s", err, out)
		}
	})
}

// TestStoreDSNPasswordHidden: moat config check never prints the
// database password.
func TestStoreDSNPasswordHidden(t *testing.T) {
	out, err := yaml.Marshal(StoreConf{DSN: "postgres://moat:s3cret@db.example:5432/moat?sslmode=require"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "postgres://moat:xxxxx@db.example:5432/moat") {
		t.Errorf("marshalled store section:\n%s", out)
	}
}
