package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/internal/config"
)

func (a *app) scenariosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "Inspect the loaded scenarios and the overrides that tune them",
		Long: `Scenarios come from the hub unchanged; the scenarios: section of moat.yaml
tunes them without editing hub files. Each entry selects scenarios by name or
glob ("*" matches any run of characters, "/" included, "?" one character) and
sets any of:

- enabled: false leaves the scenario out of detection.
- capacity: N is how many events a leaky bucket holds; one more overflows it.
- leakspeed: 10s is how fast a leaky bucket drains one event.
- blackhole: 1m is how long a source stays quiet after an overflow.
- duration: 4h is the ban duration of the scenario's alerts; it replaces the
  profiles' duration and duration_expr.
- simulate: true records alerts and decisions and enforces nothing.

An entry naming a scenario exactly applies after the globs; among equals a
later entry wins, key by key. A glob's capacity only reaches leaky scenarios
and its leakspeed only scenarios that leak. The simulation: list acts as
simulate: true for the scenarios it names, and {name: "*", simulate: true}
puts every scenario in simulation (global simulation mode: moat status says
so, and alerts are marked simulated). An entry that matches no loaded
scenario is a warning; a bad value is an error at its line of moat.yaml.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List each scenario's effective settings and where each came from",
		Long: `Loads the hub as moat run would and lists every scenario with its effective
enabled, capacity, leakspeed, blackhole, ban duration and simulation, each
marked with the moat.yaml line that set it when an override did (the other
values are the hub file's). -o json gives, per scenario, the origin of every
value: a hub file and line, a moat.yaml line, "default" (the hub file leaves
the key out), "profiles" (the ban duration is the profiles' to choose) or
"simulation list".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			c, err := openContent(cfg)
			if err != nil {
				return err
			}
			defer c.cleanup()
			eng, err := loadEngine(cfg, c, false, 0)
			if err != nil {
				return err
			}
			printScenarioWarnings(a.stderr, eng)
			rows := make([]scenarioRow, 0)
			for _, in := range eng.Scenarios() {
				rows = append(rows, newScenarioRow(in))
			}
			return scenarioListing.render(a.stdout, format, rows)
		},
	})
	return cmd
}

// scenarioRow is one scenario as moat scenarios list prints it.
type scenarioRow struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	File      string `json:"file"`
	Enabled   bool   `json:"enabled"`
	Capacity  int    `json:"capacity"`
	LeakSpeed string `json:"leakspeed"`
	Blackhole string `json:"blackhole"`
	// Duration is the ban duration, "" when the profiles choose it.
	Duration  string `json:"duration"`
	Simulated bool   `json:"simulated"`
	// From says where each value came from, keyed as in moat.yaml.
	From map[string]string `json:"from"`

	hubFile string
	from    map[string]scenario.Origin
}

func newScenarioRow(in scenario.Info) scenarioRow {
	r := scenarioRow{
		Name: in.Name, Type: in.Type, File: scenario.Origin{File: in.File, Line: in.Line}.String(),
		Enabled: in.Enabled, Capacity: in.Capacity, Simulated: in.Simulated,
		LeakSpeed: durationText(in.LeakSpeed), Blackhole: durationText(in.Blackhole),
		From: map[string]string{}, hubFile: in.File, from: in.From,
	}
	if in.Duration > 0 {
		r.Duration = durationText(in.Duration)
	}
	for k, o := range in.From {
		r.From[k] = o.String()
	}
	return r
}

// durationText prints 10m rather than 10m0s, as moat.yaml would say it.
func durationText(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []struct {
		d time.Duration
		s string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.s
		}
	}
	return d.String()
}

// cell is a value for the table, with the moat.yaml line that set it when
// an override did.
func (r scenarioRow) cell(key, v string) string {
	o, ok := r.from[key]
	if ok && o.Line > 0 && o.File != r.hubFile {
		return fmt.Sprintf("%s (%s)", v, o)
	}
	return v
}

var scenarioListing = listing[scenarioRow]{
	columns: []column[scenarioRow]{
		{"NAME", func(r scenarioRow) string { return r.Name }},
		{"ENABLED", func(r scenarioRow) string { return r.cell(scenario.KeyEnabled, strconv.FormatBool(r.Enabled)) }},
		{"CAPACITY", func(r scenarioRow) string { return r.cell(scenario.KeyCapacity, strconv.Itoa(r.Capacity)) }},
		{"LEAKSPEED", func(r scenarioRow) string { return r.cell(scenario.KeyLeakSpeed, r.LeakSpeed) }},
		{"BLACKHOLE", func(r scenarioRow) string { return r.cell(scenario.KeyBlackhole, r.Blackhole) }},
		{"BAN DURATION", func(r scenarioRow) string {
			if r.Duration == "" {
				return "(profiles)"
			}
			return r.cell(scenario.KeyDuration, r.Duration)
		}},
		{"SIMULATED", func(r scenarioRow) string {
			if o := r.from[scenario.KeySimulate]; o == scenario.OriginSimulationList {
				return strconv.FormatBool(r.Simulated) + " (simulation list)"
			}
			return r.cell(scenario.KeySimulate, strconv.FormatBool(r.Simulated))
		}},
		{"FILE", func(r scenarioRow) string { return r.File }},
	},
	raw:   func(r scenarioRow) string { return r.Name },
	empty: "no scenario loaded",
	footer: func(int) string {
		return "values marked (file:line) come from the scenarios: overrides of moat.yaml; the others from the hub file"
	},
}

// scenarioOverrides turns the scenarios: section into the overrides the
// engine applies, each value with the line that set it.
func scenarioOverrides(cfg config.Config) []scenario.Override {
	out := make([]scenario.Override, 0, len(cfg.Scenarios))
	for i, o := range cfg.Scenarios {
		leak, black, dur := o.Durations()
		f, l := cfg.ScenarioOverrideAt(i, "")
		ov := scenario.Override{
			Name: o.Name, At: scenario.Origin{File: f, Line: l}, KeyAt: map[string]scenario.Origin{},
			Enabled: o.Enabled, Capacity: o.Capacity, LeakSpeed: leak, Blackhole: black, Duration: dur, Simulate: o.Simulate,
		}
		for _, k := range []string{scenario.KeyEnabled, scenario.KeyCapacity, scenario.KeyLeakSpeed, scenario.KeyBlackhole, scenario.KeyDuration, scenario.KeySimulate} {
			if f, l := cfg.ScenarioOverrideAt(i, k); l > 0 {
				ov.KeyAt[k] = scenario.Origin{File: f, Line: l}
			}
		}
		out = append(out, ov)
	}
	return out
}

// logScenarioWarnings logs what loading the scenarios tolerated, an
// override matching no scenario first among them.
func logScenarioWarnings(log *slog.Logger, eng *engine.Engine) {
	for _, w := range eng.Warnings() {
		log.Warn("scenario content", "warning", w.Error())
	}
}

// printScenarioWarnings prints what loading the scenarios tolerated.
func printScenarioWarnings(w io.Writer, eng *engine.Engine) {
	for _, e := range eng.Warnings() {
		fmt.Fprintf(w, "moat: warning: %s\n", esc(e.Error()))
	}
}

// overridesText renders the overrides for the engine's fingerprint: a
// reload with other overrides builds a new engine.
func overridesText(cfg config.Config) string {
	b, err := json.Marshal(cfg.Scenarios)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// simulatedScenarios counts the loaded scenarios in simulation.
func simulatedScenarios(eng *engine.Engine) int64 {
	n := int64(0)
	for _, in := range eng.Scenarios() {
		if in.Enabled && in.Simulated {
			n++
		}
	}
	return n
}

// simulationSummary says, for moat status, how much of detection only
// simulates: all of it is global simulation mode, where nothing is banned.
func simulationSummary(simulated int64, scenarios int) string {
	switch {
	case simulated == 0:
		return "off"
	case int(simulated) >= scenarios:
		return fmt.Sprintf("all %d scenarios (nothing is enforced)", scenarios)
	default:
		return fmt.Sprintf("%d of %d scenarios", simulated, scenarios)
	}
}
