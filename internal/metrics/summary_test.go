package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		q       float64
		buckets []Bucket
		want    float64
	}{
		{"median at a bound", 0.5, []Bucket{{0.001, 10}, {0.002, 20}, {inf, 20}}, 0.001},
		{"interpolated", 0.75, []Bucket{{0.001, 10}, {0.002, 20}, {inf, 20}}, 0.0015},
		{"first bucket from zero", 0.25, []Bucket{{0.001, 10}, {0.002, 20}, {inf, 20}}, 0.0005},
		{"max", 1, []Bucket{{0.001, 10}, {0.002, 20}, {inf, 20}}, 0.002},
		{"unsorted input", 0.75, []Bucket{{inf, 20}, {0.002, 20}, {0.001, 10}}, 0.0015},
		{"in +Inf gives highest bound", 0.5, []Bucket{{0.001, 0}, {0.002, 0}, {inf, 5}}, 0.002},
		{"empty histogram", 0.5, []Bucket{{0.001, 0}, {inf, 0}}, math.NaN()},
		{"no +Inf bucket", 0.5, []Bucket{{0.001, 3}}, math.NaN()},
		{"no buckets", 0.5, nil, math.NaN()},
		{"q out of range", 1.5, []Bucket{{0.001, 3}, {inf, 3}}, math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Quantile(tc.q, tc.buckets)
			if math.IsNaN(tc.want) {
				if !math.IsNaN(got) {
					t.Errorf("got %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLatencyQuantilesFromHook feeds known latencies through the Applied
// hook and checks the estimated quantiles land in the right buckets.
func TestLatencyQuantilesFromHook(t *testing.T) {
	s, w := newTestServer(t)
	// 90 bans at 400µs, 9 at 3ms, 1 at 40ms.
	for i := 0; i < 100; i++ {
		lat := 400 * time.Microsecond
		switch {
		case i == 99:
			lat = 40 * time.Millisecond
		case i >= 90:
			lat = 3 * time.Millisecond
		}
		w.ban("198.18.1.1", "crowdsecurity/ssh-bf", lat, s.Latency().Applied)
	}
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	l := Summarize(Families(fams)).Latency
	if l.Count != 100 {
		t.Fatalf("count %v, want 100", l.Count)
	}
	check := func(name string, got, lo, hi float64) {
		if got <= lo || got > hi {
			t.Errorf("%s = %v, want in (%v, %v]", name, got, lo, hi)
		}
	}
	check("p50", l.P50, 300e-6, 400e-6)
	check("p90", l.P90, 300e-6, 400e-6)
	check("p99", l.P99, 2e-3, 3e-3)
}

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
		got, err := ScrapeURL(tc.listen)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ScrapeURL(%q) = %q, %v; want %q, %q", tc.listen, got, err, tc.want, tc.err)
		}
	}
}

// TestSummaryGolden scrapes the fakes over HTTP as `moat metrics` does and
// compares the tables and the JSON with golden files.
func TestSummaryGolden(t *testing.T) {
	s, w := newTestServer(t)
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", 1700*time.Microsecond, s.Latency().Applied)
	w.ban("198.18.0.8", "crowdsecurity/ssh-bf", 4*time.Millisecond, s.Latency().Applied)
	url, err := ScrapeURL(serveAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	raw, fams, err := Fetch(context.Background(), &http.Client{Timeout: 10 * time.Second}, url)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("# TYPE "+LatencyName+" histogram")) {
		t.Error("raw scrape lacks the histogram")
	}
	sum := Summarize(fams)

	var text bytes.Buffer
	if err := sum.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.txt", text.Bytes())
	golden(t, "summary.json", append(js, '\n'))

	// And with no samples, quantiles are null in JSON, "-" in text.
	empty := Summarize(nil)
	js, err = json.Marshal(empty.Latency)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"count":0,"sum_seconds":0,"p50_seconds":null,"p90_seconds":null,"p99_seconds":null}`; string(js) != want {
		t.Errorf("empty latency JSON %s, want %s", js, want)
	}
}

func serveAddr(t *testing.T, s *Server) string {
	t.Helper()
	return serve(t, s)[len("http://"):]
}

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
