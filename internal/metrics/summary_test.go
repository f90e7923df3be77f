package metrics

import (
	"math"
	"testing"
	"time"
)

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
