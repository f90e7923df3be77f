package inject

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/injectable-*.txt from this run")

// TestFixtures runs the harness over parsers written to be injectable and
// their anchored counterparts: the first must be flagged with an attack
// line that yields the injected address, the second attacked and never
// flagged.
func TestFixtures(t *testing.T) {
	targets, skipped, err := HubTests("testdata/hub/.tests", "testdata/hub")
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Fatalf("fixture tests skipped: %v", skipped)
	}
	rep, err := Scan(context.Background(), targets, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) > 0 {
		t.Fatalf("fixture parsers did not load: %v", rep.Skipped)
	}
	byParser := map[string]Finding{}
	for _, f := range rep.Findings {
		byParser[f.Parser] = f
		t.Logf("%s", f)
	}
	cases := []struct {
		parser     string
		injectable bool
		field      string // the field the attack must go through
		want       string // the sample's true source
	}{
		{"fixture/sshd-lazy", true, "user", "198.18.70.1"},
		{"fixture/sshd-anchored", false, "", ""},
		{"fixture/http-unanchored", true, "user", "198.18.80.1"},
		{"fixture/http-anchored", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.parser, func(t *testing.T) {
			if rep.Attacked[tc.parser] == 0 {
				t.Fatalf("%s was never attacked", tc.parser)
			}
			f, found := byParser[tc.parser]
			if found != tc.injectable {
				t.Fatalf("flagged %v, want %v (%s)", found, tc.injectable, f)
			}
			if !found {
				return
			}
			if !slices.Contains(f.Fields, tc.field) || f.Want != tc.want || !injected(f.Source) {
				t.Errorf("finding %s: want field %s, source %s replaced by an injected address", f, tc.field, tc.want)
			}
			if !strings.Contains(f.Attack, Injected4) && !strings.Contains(f.Attack, Injected6) {
				t.Errorf("attack line %q carries no injected address", f.Attack)
			}
		})
	}
	if got := rep.Injectable(); len(got) != 2 {
		t.Errorf("injectable %v, want exactly the two unanchored fixtures", got)
	}
}

// TestPayloads checks the shapes the brief of the harness names reach a
// field: sshd's address part after a user name, the separator the line
// has after a field, and IPv6.
func TestPayloads(t *testing.T) {
	const line = "Failed password for root from 198.18.70.1 port 40001 ssh2"
	f := field{name: "user", start: strings.Index(line, "root")}
	f.end = f.start + len("root")
	got := payloads(line, f, "198.18.70.1", 0)
	for _, want := range []string{
		"root from " + Injected4 + " port 1",
		"root from " + Injected4 + " port 40001 ssh2",
		"root from " + Injected6 + " port 1",
		Injected4,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no payload %q among %q", want, got)
		}
	}

	// Inside quotes, no payload closes them: the programs that quote a
	// field escape quotes in it.
	const access = `198.18.80.1 - - [01/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8.0"`
	f = field{name: "agent", start: strings.Index(access, "curl")}
	f.end = f.start + len("curl/8.0")
	for _, p := range payloads(access, f, "198.18.80.1", 0) {
		if strings.Contains(p, `"`) {
			t.Errorf("payload %q closes the quoted field", p)
		}
	}
}

func TestInjected(t *testing.T) {
	cases := []struct {
		v    string
		want bool
	}{
		{Injected4, true},
		{"::ffff:" + Injected4, true},
		{"2001:DB8:DEAD:BEEF::99", true},
		{Injected4 + ":1", true},
		{"198.51.100.9", false},
		{"198.18.70.1", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := injected(tc.v); got != tc.want {
			t.Errorf("injected(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestHubSnapshots attacks the parsers of the CrowdSec hub snapshot and of
// Debian's crowdsec package with the hub's own test logs. Injectable hub
// parsers are findings, not failures: the list is logged and compared with
// testdata/injectable-*.txt so that a change either way is noticed.
func TestHubSnapshots(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP (-short): attacks every hub parser with its test logs (about 15 s per hub)")
	}
	shared := testutil.Shared(t, "crowdsec-hub")
	tests := filepath.Join(shared, "hub", ".tests")
	cases := []struct {
		name, hub, patterns, data string
	}{
		{"shared-hub", filepath.Join(shared, "hub"), filepath.Join(shared, "patterns"), filepath.Join(shared, "data")},
		// Debian's hub carries no .tests: the snapshot's samples attack
		// its (older) parsers, by name.
		{"debian-hub", "/usr/share/crowdsec/hub", "/etc/crowdsec/patterns", "/usr/share/crowdsec/data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat(tc.hub); err != nil {
				t.Skipf("SKIP: %s is missing (Debian's crowdsec package installs it): %v", tc.hub, err)
			}
			targets, skipped, err := HubTests(tests, tc.hub)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Scan(context.Background(), targets, Options{PatternDir: tc.patterns, DataDir: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d hub tests attacked, %d skipped (parsers not in this hub), %d unloadable %q; %d lines, %d formats, %d attacks in %v: %d injectable parsers",
				len(targets)-len(rep.Skipped), len(skipped), len(rep.Skipped), rep.Skipped, rep.Lines, rep.Formats, rep.Attacks, rep.Elapsed.Round(time.Millisecond), len(rep.Findings))
			for _, f := range rep.Findings {
				t.Logf("injectable: %s", f)
			}
			if rep.Attacks == 0 || len(rep.Attacked) == 0 {
				t.Fatal("no hub parser was attacked")
			}
			compareGolden(t, filepath.Join("testdata", "injectable-"+tc.name+".txt"), rep)
		})
	}
}

func compareGolden(t *testing.T, path string, rep *Report) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Hub parsers whose source address a client's text can move: parser, fields, attack line.\n")
	b.WriteString("# Regenerate with: go test ./detect/inject -run TestHubSnapshots -update\n")
	for _, f := range rep.Findings {
		fmt.Fprintf(&b, "%s\t%s\t%q\n", f.Parser, strings.Join(f.Fields, ","), f.Attack)
	}
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for _, l := range wl {
			if !slices.Contains(gl, l) {
				t.Errorf("no longer found: %s", l)
			}
		}
		for _, l := range gl {
			if !slices.Contains(wl, l) {
				t.Errorf("newly found: %s", l)
			}
		}
		t.Errorf("injectable parsers differ from %s: review, then run with -update", path)
	}
}
