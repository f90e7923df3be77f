package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBadScenarioOverrides(t *testing.T) {
	want := map[string]string{
		"bad-leakspeed.bad.yaml":  `testdata/scenarios/bad-leakspeed.bad.yaml:4: scenarios[0] leakspeed "fast": want a duration like 10s, 5m or 4h`,
		"zero-leakspeed.bad.yaml": `testdata/scenarios/zero-leakspeed.bad.yaml:3: scenarios[0] leakspeed "0s": want a positive duration`,
		"no-name.bad.yaml":        `testdata/scenarios/no-name.bad.yaml:4: scenarios[1] needs a name: a scenario name or a glob such as crowdsecurity/ssh-*`,
		"unknown-key.bad.yaml":    `testdata/scenarios/unknown-key.bad.yaml:4: unknown key "bantime"`,
		"sets-nothing.bad.yaml":   `testdata/scenarios/sets-nothing.bad.yaml:2: scenarios[0] "moat/ssh-bf" sets nothing: give enabled, capacity, leakspeed, blackhole, duration or simulate`,
		"capacity.bad.yaml":       `testdata/scenarios/capacity.bad.yaml:3: scenarios[0] capacity -2: want -1 (counters and bayesian), 0 (triggers) or more`,
		"blackhole.bad.yaml":      `testdata/scenarios/blackhole.bad.yaml:3: scenarios[0] blackhole "-1m": want a positive duration`,
		"simulate-type.bad.yaml":  "testdata/scenarios/simulate-type.bad.yaml:3: cannot unmarshal !!str `maybe` into bool",
	}
	files, err := filepath.Glob("testdata/scenarios/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d bad files, %d expected errors: keep them in step", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if got, w := err.Error(), want[filepath.Base(f)]; got != w {
				t.Fatalf("error\n got %s\nwant %s", got, w)
			}
		})
	}
}

func TestScenarioOverridesLoad(t *testing.T) {
	const path = "testdata/scenarios/good.yaml"
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Scenarios) != 4 {
		t.Fatalf("%d overrides, want 4", len(cfg.Scenarios))
	}
	tests := []struct {
		i                   int
		key                 string
		line                int
		leak, black, banFor time.Duration // -1: left out
	}{
		{0, "duration", 5, -1, -1, time.Hour},
		{1, "capacity", 7, 10 * time.Minute, 0, -1},
		{2, "simulate", 11, -1, -1, -1},
		{3, "enabled", 13, -1, -1, -1},
		{3, "", 12, -1, -1, -1},
	}
	val := func(d *time.Duration) time.Duration {
		if d == nil {
			return -1
		}
		return *d
	}
	for _, tt := range tests {
		if f, l := cfg.ScenarioOverrideAt(tt.i, tt.key); f != path || l != tt.line {
			t.Errorf("override %d key %q at %s:%d, want line %d", tt.i, tt.key, f, l, tt.line)
		}
		leak, black, dur := cfg.Scenarios[tt.i].Durations()
		if val(leak) != tt.leak || val(black) != tt.black || val(dur) != tt.banFor {
			t.Errorf("override %d durations %v %v %v, want %v %v %v", tt.i, val(leak), val(black), val(dur), tt.leak, tt.black, tt.banFor)
		}
	}
	if f, l := cfg.SimulationAt(0); f != path || l != 2 {
		t.Errorf("simulation[0] at %s:%d, want line 2", f, l)
	}
	if c := cfg.Scenarios[1].Capacity; c == nil || *c != 2 {
		t.Errorf("capacity %v, want 2", c)
	}
	if e := cfg.Scenarios[3].Enabled; e == nil || *e {
		t.Errorf("enabled %v, want false", e)
	}
	// The effective configuration round-trips.
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Load(p)
	if err != nil {
		t.Fatalf("marshalled config does not load: %v\n%s", err, out)
	}
	if len(again.Scenarios) != 4 || again.Scenarios[1].LeakSpeed != "10m" || again.Scenarios[0].Simulate != nil || again.Scenarios[2].Simulate == nil || !*again.Scenarios[2].Simulate {
		t.Fatalf("round trip changed the overrides: %+v", again.Scenarios)
	}
}
