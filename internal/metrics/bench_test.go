package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// BenchmarkLatencyApplied is the cost the Applied hook adds to the
// reconciler per banned decision.
func BenchmarkLatencyApplied(b *testing.B) {
	l := NewLatency()
	now := time.Now()
	batch := []model.Decision{{Value: netip.MustParsePrefix("198.18.0.1/32"), ReadAt: now.Add(-700 * time.Microsecond)}}
	b.ReportAllocs()
	for b.Loop() {
		l.Applied(batch, now)
	}
}

// BenchmarkLatencyAppliedParallel checks Observe stays cheap when several
// goroutines observe at once (it never should, but the histogram allows it).
func BenchmarkLatencyAppliedParallel(b *testing.B) {
	l := NewLatency()
	now := time.Now()
	batch := []model.Decision{{Value: netip.MustParsePrefix("198.18.0.1/32"), ReadAt: now.Add(-700 * time.Microsecond)}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Applied(batch, now)
		}
	})
}

// BenchmarkScrape is one full /metrics scrape with a hub-sized engine:
// 300 parser nodes and 150 scenarios.
func BenchmarkScrape(b *testing.B) {
	s, w := newTestServer(b)
	w.eng.Parsers = nil
	for i := range 300 {
		w.eng.Parsers = append(w.eng.Parsers, ParserStat{Stage: fmt.Sprintf("s0%d", i%3), Parser: fmt.Sprintf("hub/parser-%d", i), Hits: uint64(i * 100), Parsed: uint64(i * 90)})
	}
	w.eng.Scenarios = nil
	for i := range 150 {
		name := fmt.Sprintf("hub/scenario-%d", i)
		w.eng.Scenarios = append(w.eng.Scenarios, ScenarioStat{Name: name, Pours: uint64(i), Buckets: i})
		w.created[[2]string{name, "local"}] = uint64(i)
	}
	h := s.Handler()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatalf("scrape: %d", rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkStatusPage renders the status page with 200 decisions listed.
func BenchmarkStatusPage(b *testing.B) {
	s, w := newTestServer(b)
	for i := range 200 {
		w.ban(fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), "crowdsecurity/ssh-bf", time.Millisecond, s.Latency().Applied)
	}
	h := s.Handler()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 200 {
			b.Fatalf("status page: %d", rec.Code)
		}
		_, _ = io.Copy(io.Discard, rec.Body)
	}
}
