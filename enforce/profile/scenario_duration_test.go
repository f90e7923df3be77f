package profile

import (
	"context"
	"testing"
	"time"

	"github.com/moatsec/moat/packaging"
)

// A scenario override's ban duration replaces the profile's duration and
// its duration_expr escalation; without one the profile decides.
func TestScenarioDuration(t *testing.T) {
	set, err := Parse("packaging/profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		override time.Duration
		earlier  int // bans the store holds for the address
		want     time.Duration
	}{
		{"profile duration", 0, 0, 4 * time.Hour},
		{"profile escalation", 0, 2, 16 * time.Hour},
		{"override", time.Hour, 0, time.Hour},
		{"override beats duration_expr", 90 * time.Minute, 2, 90 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{taken: map[string][]time.Time{}}
			for range tt.earlier {
				h.taken["198.18.0.7"] = append(h.taken["198.18.0.7"], now.Add(-time.Hour))
			}
			a := ipAlert("198.18.0.7")
			a.Duration = tt.override
			out, err := set.Decide(context.Background(), a, h, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Decisions) != 1 {
				t.Fatalf("decisions %+v", out.Decisions)
			}
			if got := out.Decisions[0].Until.Sub(now); got != tt.want {
				t.Fatalf("ban for %s, want %s", got, tt.want)
			}
		})
	}
}
