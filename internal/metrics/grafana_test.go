package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../../packaging/grafana/moat.json"

// dashboardExprs returns every PromQL expression in the dashboard: panel
// targets and template variable queries.
func dashboardExprs(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") && strings.Contains(s, "moat_") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	sort.Strings(out)
	return out
}

// TestDashboardUsesExportedMetrics checks that every metric the Grafana
// dashboard queries is one moat exports.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 15 {
		t.Fatalf("dashboard has %d expressions, want a full board", len(exprs))
	}
	s, w := newTestServer(t)
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", time.Millisecond, s.Latency().Applied)
	fams := scrape(t, serve(t, s))

	name := regexp.MustCompile(`moat_[a-z_]+`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			used[n] = true
		}
	}
	for n := range used {
		if exported(fams, n) {
			continue
		}
		t.Errorf("dashboard queries %s, which moat does not export", n)
	}
	// The board covers what it promises.
	for _, n := range []string{"moat_alerts_total", "moat_active_decisions", "moat_xdp_dropped_packets_total",
		"moat_nft_dropped_packets_total", "moat_detection_to_kernel_seconds_bucket", "moat_engine_lines_unparsed_total"} {
		if !used[n] {
			t.Errorf("dashboard never queries %s", n)
		}
	}
}

func exported(fams map[string]*dto.MetricFamily, n string) bool {
	if fams[n] != nil {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suf); ok {
			if f := fams[base]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
	}
	return false
}

// TestDashboardDatasourceVariable checks the board can be imported into any
// Grafana: every panel queries the ${datasource} variable, never a fixed
// data source.
func TestDashboardDatasourceVariable(t *testing.T) {
	b, err := os.ReadFile(filepath.Clean(dashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
		Panels []struct {
			Type       string
			Title      string
			Datasource struct{ Type, UID string }
			Targets    []struct {
				Datasource struct{ Type, UID string }
				Expr       string
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			found = true
		}
	}
	if !found {
		t.Error("no Prometheus datasource variable named datasource")
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q uses data source %q", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" || tg.Expr == "" {
				t.Errorf("panel %q: target on %q with expr %q", p.Title, tg.Datasource.UID, tg.Expr)
			}
		}
	}
}
