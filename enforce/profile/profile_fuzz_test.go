package profile

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

type countNone struct{}

func (countNone) CountDecisions(context.Context, string, time.Time) (int, error) { return 3, nil }

// FuzzParse compiles attacker-controlled profiles. An error is an *Error
// naming the file, and no set; a set holds named, distinct profiles whose
// decisions have a positive duration and an Ip or Range scope, and deciding
// on an alert only yields bans of that alert's source, for a positive time.
func FuzzParse(f *testing.F) {
	f.Add(packaging.DefaultProfiles)
	f.Add([]byte("name: a\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 1h, scope: Range}]\non_success: continue\n---\nname: b\nfilters: [\"Alert.GetValue() startsWith '198.18.'\"]\ndecisions: [{duration: 30s}]\nduration_expr: \"'-1h'\"\n"))
	f.Add([]byte("name: a\nfilters: [\"true\"]\ndecisions: [{duration: 1h}]\nduration_expr: \"Sprintf('%dh', GetDecisionsSinceCount(Alert.GetValue(), '24h'))\"\n"))
	f.Add([]byte("name: a\nfilters: [1]\n"))
	f.Add([]byte("name: a\nfilters: [\"true\"]\nunknown: 1\n"))
	f.Add([]byte("name: a\nfilters: [\"true\"]\n---\nname: a\nfilters: [\"true\"]\n"))
	const file = "/etc/moat/profiles.yaml"
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	alerts := []model.Alert{
		{Scenario: "moat/ssh-bf", Scope: model.ScopeIP, Value: "198.18.0.1", Source: netip.MustParsePrefix("198.18.0.1/32"), Remediation: true, EventsCount: 6},
		{Scenario: "moat/ssh-bf", Scope: model.ScopeRange, Value: "2001:db8::/64", Source: netip.MustParsePrefix("2001:db8::/64"), Remediation: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(file, data)
		if err != nil {
			var pe *Error
			if s != nil || !errors.As(err, &pe) || pe.File != file || pe.Line < 0 {
				t.Fatalf("error %#v with set %v: want an *Error for %s and no set", err, s, file)
			}
			return
		}
		if s == nil || len(s.Profiles) == 0 {
			t.Fatal("no error and no profiles")
		}
		names := map[string]bool{}
		for _, p := range s.Profiles {
			if p.Name == "" || names[p.Name] {
				t.Fatalf("profile name %q empty or repeated", p.Name)
			}
			names[p.Name] = true
			for _, d := range p.Decisions {
				if sc := strings.ToLower(d.Scope); d.Duration <= 0 || (sc != "" && sc != "ip" && sc != "range") {
					t.Fatalf("profile %s: decision %+v", p.Name, d)
				}
			}
		}
		for _, a := range alerts {
			out, err := s.Decide(context.Background(), a, countNone{}, now)
			if err != nil {
				continue // a filter may fail at run time; that is reported, not a decision
			}
			for _, d := range out.Decisions {
				if !d.Until.After(now) || !d.Value.IsValid() || !d.Value.Overlaps(a.Source) {
					t.Fatalf("alert on %s gave decision %+v", a.Value, d)
				}
			}
		}
	})
}
