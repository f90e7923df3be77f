package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fleetSrc FleetStats

func (f fleetSrc) FleetStats() FleetStats { return FleetStats(f) }

func TestFleetMetrics(t *testing.T) {
	f := NewFleet()
	f.SetSource(fleetSrc{Pushed: 7, PushErrors: 1, Reconnects: 2, Applied: 5, Deleted: 1, Seq: 42, Connected: true})
	f.ObserveLag(3 * time.Millisecond)
	f.ObserveLag(-time.Second) // a clock step counts as 0
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[fam.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[fam.GetName()] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				got[fam.GetName()+"_count"] = float64(h.GetSampleCount())
				got[fam.GetName()+"_sum"] = h.GetSampleSum()
				got[fam.GetName()+"_le_1ms"] = float64(h.GetBucket()[0].GetCumulativeCount())
			}
		}
	}
	want := map[string]float64{
		"moat_fleet_pushed_alerts_total":            7,
		"moat_fleet_push_errors_total":              1,
		"moat_fleet_push_dropped_total":             0,
		"moat_fleet_stream_reconnects_total":        2,
		"moat_fleet_decisions_applied_total":        5,
		"moat_fleet_decisions_deleted_total":        1,
		"moat_fleet_stream_position":                42,
		"moat_fleet_stream_connected":               1,
		"moat_fleet_propagation_lag_seconds_count":  2,
		"moat_fleet_propagation_lag_seconds_sum":    0.003,
		"moat_fleet_propagation_lag_seconds_le_1ms": 1,
	}
	if len(got) != len(want) {
		t.Errorf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
