package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/internal/metrics"
)

func TestScrapeURL(t *testing.T) {
	tests := []struct{ listen, want, err string }{
		{"127.0.0.1:9641", "http://127.0.0.1:9641/metrics", ""},
		{"0.0.0.0:9641", "http://127.0.0.1:9641/metrics", ""},
		{":9641", "http://127.0.0.1:9641/metrics", ""},
		{"[::]:9641", "http://[::1]:9641/metrics", ""},
		{"[::1]:9641", "http://[::1]:9641/metrics", ""},
		{"localhost:9641", "http://localhost:9641/metrics", ""},
		{"", "", "metrics.listen is empty: the daemon serves no metrics"},
		{"9641", "", `metrics.listen "9641": address 9641: missing port in address`},
	}
	for _, tc := range tests {
		got, err := scrapeURL(tc.listen)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("scrapeURL(%q) = %q, %v; want %q, %q", tc.listen, got, err, tc.want, tc.err)
		}
	}
}

// TestMetricsViewGolden scrapes over HTTP, as `moat metrics` does, a
// scrape of the metrics package's fakes after two bans
// (testdata/metrics.prom), and compares the tables and the JSON with
// golden files.
func TestMetricsViewGolden(t *testing.T) {
	scrape, err := os.ReadFile("testdata/metrics.prom")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(scrape)
	}))
	defer srv.Close()
	raw, fams, err := fetchMetrics(context.Background(), &http.Client{Timeout: 10 * time.Second}, srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("# TYPE "+metrics.LatencyName+" histogram")) {
		t.Error("raw scrape lacks the histogram")
	}
	sum := metrics.Summarize(fams)

	var text bytes.Buffer
	if err := writeMetricsText(&text, sum); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, "metricsview.txt", text.Bytes())
	compareGolden(t, "metricsview.json", append(js, '\n'))

	// And with no samples, quantiles are null in JSON, "-" in text.
	empty := metrics.Summarize(nil)
	js, err = json.Marshal(empty.Latency)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"count":0,"sum_seconds":0,"p50_seconds":null,"p90_seconds":null,"p99_seconds":null}`; string(js) != want {
		t.Errorf("empty latency JSON %s, want %s", js, want)
	}
	text.Reset()
	if err := writeMetricsText(&text, empty); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text.Bytes(), []byte("0     -     -    -    -")) {
		t.Errorf("empty latency row:\n%s", text.Bytes())
	}
}

func compareGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}
