package action

import (
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// BenchmarkEnforced is what a ban pays for an action: building the event
// and queueing it, or counting the drop once the queue is full (no Run
// drains it here).
func BenchmarkEnforced(b *testing.B) {
	s, err := Compile("bench", config.Action{Command: "/bin/true", Args: []string{"{{.Value}}"}, Queue: 1000})
	if err != nil {
		b.Fatal(err)
	}
	m := New(s)
	ds := []model.Decision{{ID: 1, Value: netip.MustParsePrefix("198.18.0.1/32"), Type: "ban", Origin: model.OriginLocal, Scenario: "crowdsecurity/ssh-bf", Until: time.Now().Add(time.Hour)}}
	b.ReportAllocs()
	for b.Loop() {
		m.Enforced(true, ds)
	}
}
