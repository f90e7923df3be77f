package detect

import "sort"

// Overflow is a bucket overflow as hub expressions see it (CrowdSec's
// RuntimeAlert): postoverflows read it as evt.Overflow, and so do the
// scenarios an overflow is poured into again (a scenario with
// reprocess: true). A log event's Overflow is the zero value: its Alert is
// nil.
type Overflow struct {
	Alert       *AlertView
	Sources     map[string]OverflowSource
	Whitelisted bool
	// Reprocess is set when the scenario that overflowed asks for its
	// overflows to be poured into the scenarios again.
	Reprocess bool
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

// OverflowSource is one overflow source (CrowdSec's models.Source).
type OverflowSource struct {
	Scope, Value, IP, Range string
	AsName, AsNumber, Cn    string
	Latitude, Longitude     float32
}

// GetScope returns the scope ("Ip", "Range", ...).
func (s OverflowSource) GetScope() string { return s.Scope }

// GetValue returns the source value.
func (s OverflowSource) GetValue() string { return s.Value }

// GetAsName returns the AS name, when known.
func (s OverflowSource) GetAsName() string { return s.AsName }

// GetAsNumber returns the AS number, when known.
func (s OverflowSource) GetAsNumber() string { return s.AsNumber }

// GetCn returns the country code, when known.
func (s OverflowSource) GetCn() string { return s.Cn }

// AlertView is the alert of an overflow (CrowdSec's models.Alert subset).
type AlertView struct {
	Scenario        string
	ScenarioVersion string
	ScenarioHash    string
	Message         string
	Source          *OverflowSource
	Events          []*AlertEvent
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

// AlertEvent is the meta of one event of an alert.
type AlertEvent struct {
	Timestamp string
	Meta      map[string]string
}

// GetMeta returns a meta value or "".
func (e *AlertEvent) GetMeta(k string) string { return e.Meta[k] }
