package metrics

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/moatsec/moat/internal/testutil"
)

// httpClient bounds every request a test makes.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// serve runs s on a random loopback port until the test ends and returns
// its base URL.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, b
}

func scrape(t testing.TB, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d: %s", code, body)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value finds the sample of name whose labels include want.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	for _, s := range each(fams, name) {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if s.labels[want[i]] != want[i+1] {
				ok = false
			}
		}
		if ok {
			return s.value
		}
	}
	t.Fatalf("no sample %s%v in the scrape", name, want)
	return 0
}

type hist struct {
	count, sum float64
	buckets    map[float64]float64
}

func histogram(t testing.TB, fams map[string]*dto.MetricFamily, name string) hist {
	t.Helper()
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
		t.Fatalf("%s: want one histogram series, got %v", name, f)
	}
	h := f.GetMetric()[0].GetHistogram()
	out := hist{count: float64(h.GetSampleCount()), sum: h.GetSampleSum(), buckets: map[float64]float64{}}
	for _, b := range h.GetBucket() {
		out.buckets[b.GetUpperBound()] = float64(b.GetCumulativeCount())
	}
	return out
}

// TestBanMovesMetrics drives one ban through the fakes and the Applied hook
// and checks, over HTTP, that each figure moved by exactly what the ban
// implies and nothing else did.
func TestBanMovesMetrics(t *testing.T) {
	s, w := newTestServer(t)
	base := serve(t, s)
	before := scrape(t, base)
	h0 := histogram(t, before, LatencyName)

	const lat = 1700 * time.Microsecond
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", lat, s.Latency().Applied)

	after := scrape(t, base)
	h1 := histogram(t, after, LatencyName)

	deltas := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"moat_decisions_total", []string{"scenario", "crowdsecurity/ssh-bf", "origin", "local"}, 1},
		{"moat_decisions_total", []string{"origin", "cli"}, 0},
		{"moat_alerts_total", []string{"scenario", "crowdsecurity/ssh-bf", "origin", "local"}, 1},
		{"moat_alerts_total", []string{"scenario", "crowdsecurity/ssh-slow-bf"}, 0},
		{"moat_active_decisions", []string{"origin", "local"}, 1},
		{"moat_active_decisions", []string{"origin", "cli"}, 0},
		{"moat_scenario_overflows_total", []string{"scenario", "crowdsecurity/ssh-bf"}, 1},
		{"moat_scenario_overflows_total", []string{"scenario", "crowdsecurity/ssh-slow-bf"}, 0},
		{"moat_reconciler_batches_total", nil, 1},
		{"moat_reconciler_entries", nil, 1},
		{"moat_kernel_elements", []string{"backend", "nftables", "set", "ban4"}, 1},
		{"moat_kernel_elements", []string{"backend", "nftables", "set", "ban6"}, 0},
		{"moat_kernel_elements", []string{"backend", "xdp", "set", "ban4"}, 1},
		{"moat_source_lines_total", []string{"source", "/var/log/auth.log"}, 0},
	}
	for _, d := range deltas {
		got := value(t, after, d.name, d.labels...) - value(t, before, d.name, d.labels...)
		if got != d.want {
			t.Errorf("%s%v moved by %v, want %v", d.name, d.labels, got, d.want)
		}
	}

	// The batch held two decisions; only the one read from a log line
	// counts.
	if got := h1.count - h0.count; got != 1 {
		t.Errorf("histogram count moved by %v, want 1", got)
	}
	if got := h1.sum - h0.sum; math.Abs(got-lat.Seconds()) > 1e-9 {
		t.Errorf("histogram sum moved by %v, want %v", got, lat.Seconds())
	}
	for ub, c := range h1.buckets {
		want := 0.0
		if ub >= lat.Seconds() {
			want = 1
		}
		if got := c - h0.buckets[ub]; got != want {
			t.Errorf("bucket le=%g moved by %v, want %v", ub, got, want)
		}
	}
	if len(h1.buckets) != len(latencyBuckets)+1 {
		t.Errorf("histogram has %d buckets, want %d and +Inf", len(h1.buckets), len(latencyBuckets))
	}

	// Go and process collectors are on.
	for _, n := range []string{"go_goroutines", "process_cpu_seconds_total", "moat_scrape_collector_success"} {
		if after[n] == nil {
			t.Errorf("scrape lacks %s", n)
		}
	}
	for _, c := range []string{"sources", "engine", "reconciler", "nftables", "xdp", "decisions"} {
		if v := value(t, after, "moat_scrape_collector_success", "collector", c); v != 1 {
			t.Errorf("collector %s success = %v, want 1", c, v)
		}
	}
}

// failingNFT fails to read, as a backend whose netlink socket broke.
type failingNFT struct{}

func (failingNFT) DropCounters(context.Context) (map[string]DropCounter, error) {
	return nil, fmt.Errorf("netlink: %w", os.ErrDeadlineExceeded)
}
func (failingNFT) Elements(context.Context) (map[string]int, error) { return nil, nil }

// TestFailingCollector checks that one broken backend costs only its own
// figures and is reported, never the whole scrape.
func TestFailingCollector(t *testing.T) {
	w := newWorld()
	s, err := New(Config{Engine: w, NFTables: failingNFT{}})
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, serve(t, s))
	if v := value(t, fams, "moat_scrape_collector_success", "collector", "nftables"); v != 0 {
		t.Errorf("nftables success = %v, want 0", v)
	}
	if v := value(t, fams, "moat_engine_lines_total"); v != float64(w.eng.Lines) {
		t.Errorf("moat_engine_lines_total = %v, want %v", v, w.eng.Lines)
	}
	if fams["moat_nft_dropped_packets_total"] != nil {
		t.Error("a failed nftables read still exported counters")
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter over a full scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	testutil.RequireRoot(t)
	promtool := needTool(t, "promtool", "prometheus")
	s, w := newTestServer(t)
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", time.Millisecond, s.Latency().Applied)
	_, body := get(t, serve(t, s)+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// needTool finds a binary from a Debian package; tests that need one are
// gated like the kernel tests.
func needTool(t testing.TB, bin, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("SKIPPED in -short mode: needs %s from the Debian package %s", bin, pkg)
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found: apt-get install -y --no-install-recommends %s", bin, pkg)
	}
	return p
}

// TestWebConfig checks that the exporter-toolkit web config is honoured:
// basic auth turns an anonymous scrape away and lets the user in.
func TestWebConfig(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  moat: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	s, err := New(Config{WebConfigFile: cfg, Engine: w})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, s)
	if code, _ := get(t, base+"/metrics"); code != http.StatusUnauthorized {
		t.Errorf("anonymous scrape: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.SetBasicAuth("moat", "s3cret")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("authenticated scrape: %d, want 200", resp.StatusCode)
	}

	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("basic_auth_users: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{WebConfigFile: bad}); err == nil {
		t.Error("New accepted a broken web config")
	}
}
