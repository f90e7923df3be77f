package scenario

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

const overrideFile = "testdata/override/scenarios.yaml"

func ptr[T any](v T) *T { return &v }

// at is an override written at line n of moat.yaml.
func at(n int) Origin { return Origin{File: "moat.yaml", Line: n} }

// summary is the part of an Info the precedence table checks.
type summary struct {
	enabled   bool
	capacity  int
	leakspeed time.Duration
	duration  time.Duration
	simulated bool
	from      map[string]string // only the keys listed are checked
}

func TestOverridePrecedence(t *testing.T) {
	hub := func(line int) string { return overrideFile + ":" + strconv.Itoa(line) }
	tests := []struct {
		name      string
		overrides []Override
		simulated []string
		want      map[string]summary
	}{{
		name: "no override keeps the hub values",
		want: map[string]summary{
			"test/ssh-bf":      {enabled: true, capacity: 3, leakspeed: 10 * time.Second, from: map[string]string{KeyCapacity: hub(6), KeyLeakSpeed: hub(7), KeyBlackhole: hub(8), KeyDuration: "profiles", KeySimulate: "default"}},
			"test/ssh-slow-bf": {enabled: true, capacity: 10, leakspeed: time.Minute, from: map[string]string{KeyBlackhole: "default"}},
			"test/http-probe":  {enabled: true, from: map[string]string{KeyCapacity: "default"}},
		},
	}, {
		name: "a glob tunes every scenario it matches",
		overrides: []Override{
			{Name: "test/ssh-*", At: at(3), Duration: ptr(time.Hour), KeyAt: map[string]Origin{KeyDuration: at(4)}},
		},
		want: map[string]summary{
			"test/ssh-bf":      {enabled: true, capacity: 3, leakspeed: 10 * time.Second, duration: time.Hour, from: map[string]string{KeyDuration: "moat.yaml:4"}},
			"test/ssh-slow-bf": {enabled: true, capacity: 10, leakspeed: time.Minute, duration: time.Hour, from: map[string]string{KeyDuration: "moat.yaml:4"}},
			"test/http-probe":  {enabled: true, from: map[string]string{KeyDuration: "profiles"}},
		},
	}, {
		name: "an exact name beats a glob written after it",
		overrides: []Override{
			{Name: "test/ssh-bf", At: at(3), Capacity: ptr(50)},
			{Name: "*", At: at(5), Capacity: ptr(7), Simulate: ptr(true)},
		},
		want: map[string]summary{
			"test/ssh-bf":      {enabled: true, capacity: 50, leakspeed: 10 * time.Second, simulated: true, from: map[string]string{KeyCapacity: "moat.yaml:3", KeySimulate: "moat.yaml:5"}},
			"test/ssh-slow-bf": {enabled: true, capacity: 7, leakspeed: time.Minute, simulated: true, from: map[string]string{KeyCapacity: "moat.yaml:5"}},
			// A glob's capacity skips the trigger, which has none.
			"test/http-probe": {enabled: true, simulated: true, from: map[string]string{KeyCapacity: "default", KeySimulate: "moat.yaml:5"}},
		},
	}, {
		name: "among equals the later override wins, key by key",
		overrides: []Override{
			{Name: "test/ssh-bf", At: at(3), Capacity: ptr(4), LeakSpeed: ptr(time.Minute)},
			{Name: "test/ssh-bf", At: at(6), Capacity: ptr(5)},
		},
		want: map[string]summary{
			"test/ssh-bf": {enabled: true, capacity: 5, leakspeed: time.Minute, from: map[string]string{KeyCapacity: "moat.yaml:6", KeyLeakSpeed: "moat.yaml:3"}},
		},
	}, {
		name:      "the simulation list applies first, an override can lift it",
		simulated: []string{"test/ssh-bf", "test/http-probe"},
		overrides: []Override{{Name: "test/http-*", At: at(9), Simulate: ptr(false)}},
		want: map[string]summary{
			"test/ssh-bf":     {enabled: true, capacity: 3, leakspeed: 10 * time.Second, simulated: true, from: map[string]string{KeySimulate: "simulation list"}},
			"test/http-probe": {enabled: true, from: map[string]string{KeySimulate: "moat.yaml:9"}},
		},
	}, {
		name:      "disabled scenarios are listed, not loaded",
		overrides: []Override{{Name: "test/ssh-slow-bf", At: at(2), Enabled: ptr(false)}},
		want: map[string]summary{
			"test/ssh-slow-bf": {enabled: false, capacity: 10, leakspeed: time.Minute, from: map[string]string{KeyEnabled: "moat.yaml:2"}},
			"test/ssh-bf":      {enabled: true, capacity: 3, leakspeed: 10 * time.Second},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Load([]string{overrideFile}, Options{Overrides: tt.overrides, Simulated: tt.simulated})
			if err != nil {
				t.Fatal(err)
			}
			if w := set.Warnings(); len(w) > 0 {
				t.Fatalf("warnings: %v", w)
			}
			infos := set.Scenarios()
			if len(infos) != 3 {
				t.Fatalf("%d scenarios listed, want all 3", len(infos))
			}
			loaded := map[string]bool{}
			for _, n := range set.Names() {
				loaded[n] = true
			}
			for _, in := range infos {
				want, ok := tt.want[in.Name]
				if !ok {
					continue
				}
				got := [...]any{in.Enabled, in.Capacity, in.LeakSpeed, in.Duration, in.Simulated}
				exp := [...]any{want.enabled, want.capacity, want.leakspeed, want.duration, want.simulated}
				if got != exp {
					t.Errorf("%s: enabled, capacity, leakspeed, duration, simulated = %v, want %v", in.Name, got, exp)
				}
				for k, w := range want.from {
					if g := in.From[k].String(); g != w {
						t.Errorf("%s: %s from %q, want %q", in.Name, k, g, w)
					}
				}
				if loaded[in.Name] != in.Enabled {
					t.Errorf("%s: loaded %v, enabled %v", in.Name, loaded[in.Name], in.Enabled)
				}
			}
		})
	}
}

// An override that cannot apply fails the load at its own line; one that
// matches nothing is a warning naming it.
func TestOverrideErrors(t *testing.T) {
	tests := []struct {
		name      string
		overrides []Override
		wantErr   string
		wantWarn  string
	}{{
		name:      "capacity on a trigger",
		overrides: []Override{{Name: "test/http-probe", At: at(2), Capacity: ptr(5), KeyAt: map[string]Origin{KeyCapacity: at(3)}}},
		wantErr:   "moat.yaml:3: scenario test/http-probe: override: trigger must have capacity 0",
	}, {
		name:      "zero leakspeed on a leaky scenario",
		overrides: []Override{{Name: "test/ssh-*", At: at(7), LeakSpeed: ptr(time.Duration(0))}},
		wantErr:   "moat.yaml:7: scenario test/ssh-bf: override: leaky needs a positive leakspeed",
	}, {
		name:      "zero capacity on a leaky scenario",
		overrides: []Override{{Name: "test/ssh-slow-bf", At: at(4), Capacity: ptr(0)}},
		wantErr:   "moat.yaml:4: scenario test/ssh-slow-bf: override: bad capacity for leaky 0",
	}, {
		name:      "a name that matches nothing",
		overrides: []Override{{Name: "crowdsecurity/ssh-bf", At: at(12), Capacity: ptr(9)}},
		wantWarn:  `moat.yaml:12: scenario override "crowdsecurity/ssh-bf" matches no loaded scenario`,
	}, {
		name:      "a glob that matches nothing",
		overrides: []Override{{Name: "crowdsecurity/*", At: at(2), Simulate: ptr(true)}},
		wantWarn:  `moat.yaml:2: scenario override "crowdsecurity/*" matches no loaded scenario`,
	}, {
		name:      "glob characters are the only special ones",
		overrides: []Override{{Name: "test/ssh-.+", At: at(2), Simulate: ptr(true)}},
		wantWarn:  `moat.yaml:2: scenario override "test/ssh-.+" matches no loaded scenario`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Load([]string{overrideFile}, Options{Overrides: tt.overrides})
			if tt.wantErr != "" {
				var le *LoadError
				if !errors.As(err, &le) || err.Error() != tt.wantErr {
					t.Fatalf("Load error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := set.Warnings()
			if len(w) != 1 || w[0].Error() != tt.wantWarn {
				t.Fatalf("warnings = %v, want [%s]", w, tt.wantWarn)
			}
		})
	}
}

// The overridden values drive the buckets and the alerts: a raised
// capacity holds an attacker the hub file would flag, simulate and
// duration reach the alert.
func TestOverrideBehaviour(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	pour := func(t *testing.T, set *Set, n int) []string {
		t.Helper()
		var got []string
		for i := range n {
			e := detect.NewEvent(detect.Line{Raw: "test", Module: "test", ReadAt: t0, Process: true})
			e.Time = t0.Add(time.Duration(i) * time.Second)
			e.Meta["log_type"] = "ssh_failed-auth"
			e.Meta["source_ip"] = "198.18.0.9"
			for _, a := range set.Pour(e) {
				sim := ""
				if a.Simulated {
					sim = " simulated"
				}
				got = append(got, a.Scenario+" "+a.Duration.String()+sim)
			}
		}
		return got
	}
	tests := []struct {
		name      string
		overrides []Override
		want      []string
	}{
		{"hub values", nil, []string{"test/ssh-bf 0s"}},
		{"capacity raised", []Override{{Name: "test/ssh-bf", Capacity: ptr(20)}}, nil},
		{"simulated, banned for an hour", []Override{{Name: "test/ssh-*", Simulate: ptr(true), Duration: ptr(time.Hour)}}, []string{"test/ssh-bf 1h0m0s simulated"}},
		{"disabled", []Override{{Name: "test/ssh-bf", Enabled: ptr(false)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Load([]string{overrideFile}, Options{Overrides: tt.overrides})
			if err != nil {
				t.Fatal(err)
			}
			// Five failures a second apart: capacity 3 overflows at the
			// fourth, then the blackhole hides the fifth.
			got := pour(t, set, 5)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("alerts %q, want %q", got, tt.want)
			}
		})
	}
}
