package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatsec/moat/internal/model"
)

// LatencyName is the histogram of the time from reading the log line that
// triggered a ban to the ban being in the kernel.
const LatencyName = "moat_detection_to_kernel_seconds"

// LatencyBuckets are fine-grained between 100µs and 10ms, where moat's
// target sits, with a coarse tail to see how bad a bad day is.
var latencyBuckets = []float64{
	25e-6, 50e-6, 75e-6,
	100e-6, 150e-6, 200e-6, 300e-6, 400e-6, 500e-6, 750e-6,
	1e-3, 1.5e-3, 2e-3, 3e-3, 4e-3, 5e-3, 7.5e-3, 10e-3,
	25e-3, 50e-3, 100e-3, 250e-3, 1, 5,
}

// Latency is the detection-to-kernel histogram. It exists apart from the
// Server so the reconciler can be built with its Applied hook before the
// Server that reads the reconciler's counters.
type Latency struct {
	h prometheus.Histogram
}

// NewLatency returns an empty histogram.
func NewLatency() *Latency {
	return &Latency{h: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    LatencyName,
		Help:    "Time from reading the log line that triggered a ban to the ban being in the kernel.",
		Buckets: latencyBuckets,
	})}
}

// Applied has the signature of enforce.ReconcilerConfig.Applied: it observes
// at - ReadAt for each decision that came from a log line. Observe is a few
// atomic adds, so this is safe on the reconciler's goroutine.
func (l *Latency) Applied(batch []model.Decision, at time.Time) {
	for i := range batch {
		if r := batch[i].ReadAt; !r.IsZero() {
			l.Observe(at.Sub(r))
		}
	}
}

// Observe records one latency; negative durations (clock steps) count as 0.
func (l *Latency) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	l.h.Observe(d.Seconds())
}
