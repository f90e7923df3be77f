package packaging_test

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

// BenchmarkShippedServices runs each service's attack and benign samples,
// cycled, through all the shipped content, as the daemon loads it, and
// reports lines/s on one core per service: a parser or scenario that
// makes one service slow shows here before a user's log finds it.
func BenchmarkShippedServices(b *testing.B) {
	for _, service := range slices.Sorted(maps.Keys(sampleTypes)) {
		b.Run(service, func(b *testing.B) {
			var lines []string
			for _, kind := range []string{"attack", "benign"} {
				lines = append(lines, readLines(b, filepath.Join("testdata/content", service+"-"+kind+".log"))...)
			}
			e := newEngine(b)
			labels := map[string]string{"type": sampleTypes[service]}
			at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				e.Process(detect.Line{Raw: lines[i%len(lines)], Src: service, Module: "file", Process: true, Labels: labels, ReadAt: at})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
		})
	}
}
