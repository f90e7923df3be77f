package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/yamlerr"
)

// ScenarioOverride tunes the scenarios whose name matches Name without
// editing their hub files. Name is a scenario name or a glob ("*" matches
// any run of characters, "/" included; "?" one character). Every other
// key is optional and leaves the hub's value when left out. Overrides
// naming a scenario exactly apply after globs; among equals, a later one
// wins key by key. The simulation list acts as overrides with simulate:
// true written before all of these, and {name: "*", simulate: true} puts
// every scenario in simulation.
type ScenarioOverride struct {
	Name string `yaml:"name"`
	// Enabled: false leaves the scenario out of detection.
	Enabled   *bool  `yaml:"enabled,omitempty"`
	Capacity  *int   `yaml:"capacity,omitempty"`
	LeakSpeed string `yaml:"leakspeed,omitempty"`
	Blackhole string `yaml:"blackhole,omitempty"`
	// Duration is the ban duration of the scenario's alerts; it replaces
	// the profiles' duration and duration_expr.
	Duration string `yaml:"duration,omitempty"`
	// Simulate: true records alerts and decisions without enforcing them.
	Simulate *bool `yaml:"simulate,omitempty"`
}

// Durations returns the parsed leakspeed, blackhole and ban duration, nil
// for those left out. Parse has validated them.
func (o ScenarioOverride) Durations() (leakspeed, blackhole, duration *time.Duration) {
	parse := func(s string) *time.Duration {
		if s == "" {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil
		}
		return &d
	}
	return parse(o.LeakSpeed), parse(o.Blackhole), parse(o.Duration)
}

// ScenarioOverrideAt is where key of override i was written (key "" is
// the entry itself): the file and line, line 0 when unknown.
func (c *Config) ScenarioOverrideAt(i int, key string) (string, int) {
	file := c.Source
	if file == "" {
		file = "(built-in default)"
	}
	if c.root == nil {
		return file, 0
	}
	path := []any{"scenarios", i}
	if key != "" {
		path = append(path, key)
	}
	return file, lineOf(c.root, path...)
}

// SimulationAt is where entry i of the simulation list was written.
func (c *Config) SimulationAt(i int) (string, int) {
	file := c.Source
	if file == "" {
		file = "(built-in default)"
	}
	if c.root == nil {
		return file, 0
	}
	return file, lineOf(c.root, "simulation", i)
}

func (c *Config) validateScenarios(bad func(msg string, keys ...any) error) error {
	q := yamlerr.Excerpt
	for i, o := range c.Scenarios {
		at := func(msg string, key string) error {
			return bad(fmt.Sprintf("scenarios[%d] %s", i, msg), "scenarios", i, key)
		}
		if strings.TrimSpace(o.Name) == "" {
			return at("needs a name: a scenario name or a glob such as crowdsecurity/ssh-*", "name")
		}
		if o.Enabled == nil && o.Capacity == nil && o.LeakSpeed == "" && o.Blackhole == "" && o.Duration == "" && o.Simulate == nil {
			return at(fmt.Sprintf("%s sets nothing: give enabled, capacity, leakspeed, blackhole, duration or simulate", q(o.Name)), "name")
		}
		if o.Capacity != nil && *o.Capacity < -1 {
			return at(fmt.Sprintf("capacity %d: want -1 (counters and bayesian), 0 (triggers) or more", *o.Capacity), "capacity")
		}
		for _, d := range []struct {
			key, v string
			zero   bool
		}{{"leakspeed", o.LeakSpeed, false}, {"blackhole", o.Blackhole, true}, {"duration", o.Duration, false}} {
			if d.v == "" {
				continue
			}
			v, err := time.ParseDuration(d.v)
			switch {
			case err != nil:
				return at(fmt.Sprintf("%s %s: want a duration like 10s, 5m or 4h", d.key, q(d.v)), d.key)
			case v < 0 || v == 0 && !d.zero:
				return at(fmt.Sprintf("%s %s: want a positive duration", d.key, q(d.v)), d.key)
			}
		}
	}
	return nil
}
