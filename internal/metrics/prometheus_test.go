package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRealPrometheus has a real Prometheus scrape the server and answers a
// PromQL query with the active-decision count the fakes report.
func TestRealPrometheus(t *testing.T) {
	testutil.RequireRoot(t)
	bin := needTool(t, "prometheus", "prometheus")

	s, w := newTestServer(t)
	target := strings.TrimPrefix(serve(t, s), "http://")
	for i, ip := range []string{"198.18.0.1", "198.18.0.2", "198.18.0.3"} {
		w.ban(ip, "crowdsecurity/ssh-bf", time.Duration(i+1)*time.Millisecond, s.Latency().Applied)
	}
	dc, err := w.DecisionCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, n := range dc.Active {
		want += n
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: moat
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	query := "sum(moat_active_decisions)"
	deadline := time.Now().Add(45 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		v, err := promQuery(promAddr, query)
		if err != nil {
			last = err.Error()
			continue
		}
		last = strconv.FormatFloat(v, 'g', -1, 64)
		if v == float64(want) {
			// The histogram made it too: Prometheus computes a p99.
			q, err := promQuery(promAddr, "histogram_quantile(0.99, sum by (le) (moat_detection_to_kernel_seconds_bucket))")
			if err != nil {
				t.Fatalf("quantile query: %v", err)
			}
			if q <= 0 || q > 0.003 {
				t.Errorf("p99 from Prometheus = %v, want in (0, 3ms]", q)
			}
			// Every query of the Grafana board is valid PromQL.
			r := strings.NewReplacer("$__rate_interval", "1m", "$__range", "5m", "$instance", ".*")
			for _, e := range dashboardExprs(t) {
				if strings.HasPrefix(e, "label_values(") {
					continue
				}
				if _, err := promQuery(promAddr, r.Replace(e)); err != nil && !strings.Contains(err.Error(), "series, want 1") {
					t.Errorf("dashboard query %s: %v", e, err)
				}
			}
			return
		}
	}
	t.Fatalf("%s never returned %d; last answer: %s", query, want, last)
}

// promQuery runs an instant query and returns its single scalar value.
func promQuery(addr, q string) (float64, error) {
	resp, err := httpClient.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d series, want 1", q, len(r.Data.Result))
	}
	s, ok := r.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("query %s: value %v is not a string", q, r.Data.Result[0].Value[1])
	}
	return strconv.ParseFloat(s, 64)
}
