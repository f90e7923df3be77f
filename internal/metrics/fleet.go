package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetStats are the fleet agent's counters (enforce/fleet's, copied).
type FleetStats struct {
	Pushed, PushErrors, Dropped int64
	Reconnects                  int64
	Applied, Deleted            int64
	Seq                         int64
	Connected                   bool
}

// FleetSource reads the fleet agent's counters at scrape time.
type FleetSource interface {
	FleetStats() FleetStats
}

// Fleet exports the fleet agent's metrics: its counters, read at scrape
// time, and the propagation lag histogram, observed as decisions apply.
// Register it on Server.Registry.
type Fleet struct {
	src                                                                       FleetSource
	lag                                                                       prometheus.Histogram
	pushed, pushErrors, dropped, reconnects, applied, deleted, seq, connected *prometheus.Desc
}

// NewFleet returns the collector over src (which may be set later with
// SetSource, the client being built after its lag hook).
func NewFleet() *Fleet {
	return &Fleet{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moat_fleet_propagation_lag_seconds",
			Help:    "Time from the fleet server reading a decision from its store to this agent holding it.",
			Buckets: []float64{1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5, 30},
		}),
		pushed:     desc("moat_fleet_pushed_alerts_total", "Local alerts the fleet server took."),
		pushErrors: desc("moat_fleet_push_errors_total", "Failed pushes of alerts to the fleet server (retried)."),
		dropped:    desc("moat_fleet_push_dropped_total", "Local alerts not pushed, the push queue being full."),
		reconnects: desc("moat_fleet_stream_reconnects_total", "Fleet decision streams reopened after one ended."),
		applied:    desc("moat_fleet_decisions_applied_total", "Fleet decisions added here."),
		deleted:    desc("moat_fleet_decisions_deleted_total", "Fleet decisions removed here, deleted on the server."),
		seq:        desc("moat_fleet_stream_position", "The fleet server's change sequence this agent is up to."),
		connected:  desc("moat_fleet_stream_connected", "1 while the fleet decision stream is open."),
	}
}

// SetSource sets the counters' source; call it before registering.
func (f *Fleet) SetSource(src FleetSource) { f.src = src }

// ObserveLag records one decision's propagation lag.
func (f *Fleet) ObserveLag(d time.Duration) { f.lag.Observe(max(d, 0).Seconds()) }

func (f *Fleet) Describe(ch chan<- *prometheus.Desc) {
	f.lag.Describe(ch)
	for _, d := range []*prometheus.Desc{f.pushed, f.pushErrors, f.dropped, f.reconnects, f.applied, f.deleted, f.seq, f.connected} {
		ch <- d
	}
}

func (f *Fleet) Collect(ch chan<- prometheus.Metric) {
	f.lag.Collect(ch)
	if f.src == nil {
		return
	}
	st := f.src.FleetStats()
	for _, c := range []struct {
		d *prometheus.Desc
		v int64
	}{{f.pushed, st.Pushed}, {f.pushErrors, st.PushErrors}, {f.dropped, st.Dropped}, {f.reconnects, st.Reconnects}, {f.applied, st.Applied}, {f.deleted, st.Deleted}} {
		counter(ch, c.d, uint64(c.v))
	}
	ch <- prometheus.MustNewConstMetric(f.seq, prometheus.GaugeValue, float64(st.Seq))
	conn := 0.0
	if st.Connected {
		conn = 1
	}
	ch <- prometheus.MustNewConstMetric(f.connected, prometheus.GaugeValue, conn)
}
