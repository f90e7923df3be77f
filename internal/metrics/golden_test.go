package metrics

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/moatsec/moat/internal/testutil"
)

// goldenScrape renders moat's own metrics from the fakes after two bans,
// leaving out what varies from run to run (collector durations, Go and
// process metrics).
func goldenScrape(t *testing.T) []byte {
	t.Helper()
	s, w := newTestServer(t)
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", 1700*time.Microsecond, s.Latency().Applied)
	w.ban("2001:db8::7", "crowdsecurity/ssh-slow-bf", 12*time.Millisecond, s.Latency().Applied)
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var keep []*dto.MetricFamily
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "moat_") && f.GetName() != "moat_scrape_collector_duration_seconds" {
			keep = append(keep, f)
		}
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].GetName() < keep[j].GetName() })
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range keep {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestGoldenScrape pins every name, label and value moat exports; the
// golden file doubles as the reference of the metric surface.
func TestGoldenScrape(t *testing.T) {
	golden(t, "metrics.prom", goldenScrape(t))
}

// TestPromtoolGolden lints the golden exposition, as `make check` would.
func TestPromtoolGolden(t *testing.T) {
	testutil.RequireRoot(t)
	promtool := needTool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(goldenScrape(t))
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

var update = flag.Bool("update", false, "rewrite testdata golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}
