package parse

import (
	"sort"

	"github.com/moatsec/moat/detect"
)

// OverflowEvent is what postoverflow expressions address as evt: the
// fields of a log event plus evt.Overflow, named as CrowdSec names them.
type OverflowEvent struct {
	detect.Event
	Overflow Overflow
}

// GetType returns "overflow".
func (o *OverflowEvent) GetType() string { return "overflow" }

// Overflow is a bucket overflow as hub expressions and asserts see it.
type Overflow struct {
	Alert       *AlertView
	Sources     map[string]Source
	Whitelisted bool
	Reprocess   bool
}

// GetSources returns the source values, sorted.
func (o Overflow) GetSources() []string {
	out := make([]string, 0, len(o.Sources))
	for k := range o.Sources {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Source is one overflow source (CrowdSec's models.Source).
type Source struct {
	Scope, Value, IP, Range string
	AsName, AsNumber, Cn    string
	Latitude, Longitude     float32
}

// GetScope returns the scope ("Ip", "Range", ...).
func (s Source) GetScope() string { return s.Scope }

// GetValue returns the source value.
func (s Source) GetValue() string { return s.Value }

// GetAsName returns the AS name, when known.
func (s Source) GetAsName() string { return s.AsName }

// GetAsNumber returns the AS number, when known.
func (s Source) GetAsNumber() string { return s.AsNumber }

// GetCn returns the country code, when known.
func (s Source) GetCn() string { return s.Cn }

// AlertView is the alert of an overflow (CrowdSec's models.Alert subset).
type AlertView struct {
	Scenario        string
	ScenarioVersion string
	ScenarioHash    string
	Message         string
	Source          *Source
	Events          []*EventView
	EventsCount     int32
	Remediation     bool
	Simulated       bool
	StartAt, StopAt string
	Labels          map[string]string
}

// GetScenario returns the scenario name.
func (a *AlertView) GetScenario() string { return a.Scenario }

// GetScenarioVersion returns the scenario version.
func (a *AlertView) GetScenarioVersion() string { return a.ScenarioVersion }

// GetEventsCount returns how many events filled the bucket.
func (a *AlertView) GetEventsCount() int32 { return a.EventsCount }

// GetMessage returns the alert message.
func (a *AlertView) GetMessage() string { return a.Message }

// GetSimulated reports whether the scenario is in simulation.
func (a *AlertView) GetSimulated() bool { return a.Simulated }

// GetSources returns the alert's source values.
func (a *AlertView) GetSources() []string {
	if a.Source == nil {
		return nil
	}
	return []string{a.Source.Value}
}

// EventView is the meta of one event of an alert.
type EventView struct {
	Timestamp string
	Meta      map[string]string
}

// GetMeta returns a meta value or "".
func (e *EventView) GetMeta(k string) string { return e.Meta[k] }

// GetScope returns the scope of the alert's source.
func (a *AlertView) GetScope() string {
	if a.Source == nil {
		return ""
	}
	return a.Source.Scope
}

// GetValue returns the value of the alert's source.
func (a *AlertView) GetValue() string {
	if a.Source == nil {
		return ""
	}
	return a.Source.Value
}
