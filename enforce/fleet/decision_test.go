package fleet

import (
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// A server's decision reaches the agent with its whole target: a port
// scope stays a port scope, a country stays a country; what the agent
// cannot read is left out, never widened into a ban of everything.
func TestFleetDecisionTargets(t *testing.T) {
	now := time.Now()
	until := now.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		in    api.FleetDecision
		ok    bool
		value string
		ports []uint16
		proto string
		geo   string
	}{
		{"address", api.FleetDecision{ID: 1, Value: "198.51.100.7", Until: until}, true, "198.51.100.7/32", nil, "", ""},
		{"range", api.FleetDecision{ID: 2, Value: "198.51.100.0/24", Until: until}, true, "198.51.100.0/24", nil, "", ""},
		{"mail ports", api.FleetDecision{ID: 3, Value: "198.51.100.8", Until: until, Ports: "25,465", Protocol: "tcp"}, true, "198.51.100.8/32", []uint16{25, 465}, "tcp", ""},
		{"country", api.FleetDecision{ID: 4, Value: "CN", Until: until}, true, "invalid Prefix", nil, "", "CN"},
		{"AS", api.FleetDecision{ID: 5, Value: "64500", Until: until}, true, "invalid Prefix", nil, "", "64500"},
		{"forever", api.FleetDecision{ID: 6, Value: "198.51.100.9", Forever: true}, true, "198.51.100.9/32", nil, "", ""},
		{"bad ports", api.FleetDecision{ID: 7, Value: "198.51.100.10", Until: until, Ports: "25,http"}, false, "", nil, "", ""},
		{"bad protocol", api.FleetDecision{ID: 8, Value: "198.51.100.11", Until: until, Ports: "25", Protocol: "sctp"}, false, "", nil, "", ""},
		{"garbage value", api.FleetDecision{ID: 9, Value: "198.51.100.300", Until: until}, false, "", nil, "", ""},
		{"simulated", api.FleetDecision{ID: 10, Value: "198.51.100.12", Until: until, Simulated: true}, false, "", nil, "", ""},
		{"expired", api.FleetDecision{ID: 11, Value: "198.51.100.13", Until: now.Add(-time.Second)}, false, "", nil, "", ""},
		{"no id", api.FleetDecision{Value: "198.51.100.14", Until: until}, false, "", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := fleetDecision(tc.in, now)
			if ok != tc.ok {
				t.Fatalf("taken %v, want %v (%+v)", ok, tc.ok, d)
			}
			if !ok {
				return
			}
			if d.Value.String() != tc.value || !slices.Equal(d.Ports, tc.ports) || d.Protocol != tc.proto || d.Geo.Value != tc.geo {
				t.Errorf("got value %s ports %v/%q geo %q, want %s %v/%q %q", d.Value, d.Ports, d.Protocol, d.Geo.Value, tc.value, tc.ports, tc.proto, tc.geo)
			}
		})
	}
}
