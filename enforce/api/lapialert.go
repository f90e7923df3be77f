package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// The CrowdSec LAPI's machine-side wire shapes (its pkg/models): what an
// agent pushes to POST /v1/alerts and reads from GET /v1/alerts. Pointers
// are fields CrowdSec marks required, so a missing one is told apart from
// an empty one.

type lapiMetaItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type lapiEvent struct {
	Meta      []lapiMetaItem `json:"meta"`
	Timestamp *string        `json:"timestamp"`
}

type lapiSource struct {
	AsName    string  `json:"as_name,omitempty"`
	AsNumber  string  `json:"as_number,omitempty"`
	Cn        string  `json:"cn,omitempty"`
	IP        string  `json:"ip,omitempty"`
	Latitude  float32 `json:"latitude,omitempty"`
	Longitude float32 `json:"longitude,omitempty"`
	Range     string  `json:"range,omitempty"`
	Scope     *string `json:"scope"`
	Value     *string `json:"value"`
}

// lapiAlertDecision is a decision inside an alert, as pushed and as listed.
type lapiAlertDecision struct {
	Duration  *string `json:"duration"`
	ID        int64   `json:"id,omitempty"`
	Origin    *string `json:"origin"`
	Scenario  *string `json:"scenario"`
	Scope     *string `json:"scope"`
	Simulated *bool   `json:"simulated"`
	Type      *string `json:"type"`
	Until     string  `json:"until,omitempty"`
	Value     *string `json:"value"`
}

// lapiAlert is CrowdSec's models.Alert.
type lapiAlert struct {
	Capacity        *int32               `json:"capacity"`
	CreatedAt       string               `json:"created_at,omitempty"`
	Decisions       []*lapiAlertDecision `json:"decisions"`
	Events          []*lapiEvent         `json:"events"`
	EventsCount     *int32               `json:"events_count"`
	ID              int64                `json:"id,omitempty"`
	Labels          []string             `json:"labels"`
	Leakspeed       *string              `json:"leakspeed"`
	MachineID       string               `json:"machine_id,omitempty"`
	Message         *string              `json:"message"`
	Meta            []lapiMetaItem       `json:"meta,omitempty"`
	Remediation     bool                 `json:"remediation,omitempty"`
	Scenario        *string              `json:"scenario"`
	ScenarioHash    *string              `json:"scenario_hash"`
	ScenarioVersion *string              `json:"scenario_version"`
	Simulated       *bool                `json:"simulated"`
	Source          *lapiSource          `json:"source"`
	StartAt         *string              `json:"start_at"`
	StopAt          *string              `json:"stop_at"`
}

// MaxAlertsPerPush bounds the alerts of one POST /v1/alerts; an agent
// pushes its alerts as they come, a few at a time.
const MaxAlertsPerPush = 1000

// pushed is one pushed alert as moat takes it.
type pushed struct {
	alert     model.Alert
	decisions []model.Decision
	// origin of the decisions the profiles take when the alert carries
	// none.
	origin model.Origin
}

// decodeAlerts parses and checks a push: either every alert in it is
// valid, or an error and nothing to store.
func decodeAlerts(r io.Reader, machine string, now time.Time) ([]pushed, error) {
	dec := json.NewDecoder(r)
	var in []*lapiAlert
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("malformed JSON: trailing data after the array")
	}
	if len(in) == 0 {
		return nil, errors.New("no alerts")
	}
	if len(in) > MaxAlertsPerPush {
		return nil, fmt.Errorf("%d alerts: at most %d per request", len(in), MaxAlertsPerPush)
	}
	out := make([]pushed, 0, len(in))
	for i, la := range in {
		p, err := la.toModel(machine, now)
		if err != nil {
			return nil, fmt.Errorf("alert %d: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// parseLAPITime reads CrowdSec's timestamps: RFC 3339 as its agents
// write them, or Go's time.String form that some versions sent.
func parseLAPITime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", strings.SplitN(s, " m=", 2)[0]); err == nil {
		return t, true
	}
	return time.Time{}, false
}

func (la *lapiAlert) toModel(machine string, now time.Time) (pushed, error) {
	if la == nil {
		return pushed{}, errors.New("null alert")
	}
	if la.Scenario == nil || *la.Scenario == "" {
		return pushed{}, errors.New("no scenario")
	}
	if la.Source == nil || la.Source.Scope == nil || la.Source.Value == nil || *la.Source.Scope == "" || *la.Source.Value == "" {
		return pushed{}, errors.New("no source scope and value")
	}
	if len(*la.Scenario) > 512 || len(str(la.Message)) > 4096 || len(*la.Source.Value) > 256 || len(*la.Source.Scope) > 64 {
		return pushed{}, errors.New("scenario, message or source too long")
	}
	a := model.Alert{
		Scenario: *la.Scenario, ScenarioVersion: str(la.ScenarioVersion), ScenarioHash: str(la.ScenarioHash),
		Message: str(la.Message), Scope: *la.Source.Scope, Value: *la.Source.Value,
		Remediation: la.Remediation, Simulated: la.Simulated != nil && *la.Simulated,
		Labels: map[string]string{"machine": machine},
		// No ReadAt: the line was read on the machine, on its clock; the
		// log-line-to-kernel latency is the local path's measure.
	}
	switch strings.ToLower(a.Scope) {
	case "ip", "range":
		p, err := model.ParseValue(a.Value)
		if err != nil {
			return pushed{}, fmt.Errorf("source %s %q: want an IP address or CIDR range", a.Scope, a.Value)
		}
		a.Source = model.Canonical(p)
		a.Value = model.ValueString(a.Source)
		a.Scope = model.ScopeOf(a.Source)
	}
	if la.EventsCount != nil {
		if *la.EventsCount < 0 {
			return pushed{}, errors.New("negative events_count")
		}
		a.EventsCount = int(*la.EventsCount)
	}
	a.Start, a.Stop = now, now
	if t, ok := parseLAPITime(str(la.StartAt)); ok {
		a.Start = t
	}
	if t, ok := parseLAPITime(str(la.StopAt)); ok {
		a.Stop = t
	}
	if len(la.Meta) > 0 {
		a.Meta = make(map[string]string, len(la.Meta))
		for _, m := range la.Meta {
			a.Meta[m.Key] = m.Value
		}
	}
	for _, ev := range la.Events {
		if ev == nil {
			continue
		}
		m := make(map[string]string, len(ev.Meta)+1)
		for _, kv := range ev.Meta {
			m[kv.Key] = kv.Value
		}
		if ev.Timestamp != nil {
			m["timestamp"] = *ev.Timestamp
		}
		a.Events = append(a.Events, m)
	}
	p := pushed{alert: a, origin: model.OriginMachine}
	for j, ld := range la.Decisions {
		d, ok, err := ld.toModel(now)
		if err != nil {
			return pushed{}, fmt.Errorf("decision %d: %w", j, err)
		}
		if ok {
			p.decisions = append(p.decisions, d)
		}
	}
	if len(p.decisions) > MaxDecisionsPerRequest {
		return pushed{}, fmt.Errorf("%d decisions: at most %d per alert", len(p.decisions), MaxDecisionsPerRequest)
	}
	return p, nil
}

// originFromLAPI maps the origins CrowdSec's agents and cscli write to
// moat's.
func originFromLAPI(s string) (model.Origin, error) {
	switch s {
	case "crowdsec":
		return model.OriginMachine, nil
	case "cscli", "cscli-import":
		return model.OriginCLI, nil
	case "CAPI":
		return model.OriginCommunity, nil
	case "lists":
		return model.OriginList, nil
	}
	return "", fmt.Errorf("origin %q: want crowdsec, cscli, cscli-import, CAPI or lists", s)
}

// toModel converts a pushed decision. ok is false for a decision moat
// cannot hold (a scope other than Ip or Range, a country say): it is
// left out and the alert kept, as such decisions are valid CrowdSec.
func (ld *lapiAlertDecision) toModel(now time.Time) (model.Decision, bool, error) {
	if ld == nil {
		return model.Decision{}, false, errors.New("null decision")
	}
	if ld.Value == nil || ld.Scope == nil || ld.Type == nil || ld.Duration == nil || ld.Origin == nil {
		return model.Decision{}, false, errors.New("want value, scope, type, duration and origin")
	}
	origin, err := originFromLAPI(*ld.Origin)
	if err != nil {
		return model.Decision{}, false, err
	}
	switch strings.ToLower(*ld.Scope) {
	case "ip", "range":
	default:
		return model.Decision{}, false, nil
	}
	v, err := model.ParseValue(*ld.Value)
	if err != nil {
		return model.Decision{}, false, fmt.Errorf("value %q: want an IP address or CIDR range", *ld.Value)
	}
	dur, err := parseLAPIDuration(*ld.Duration)
	if err != nil || dur <= 0 || dur > MaxDuration {
		return model.Decision{}, false, fmt.Errorf("duration %q: want a positive duration up to %s", *ld.Duration, MaxDuration)
	}
	typ := *ld.Type
	if !validWord(typ, 64) || strings.ToLower(typ) != typ {
		return model.Decision{}, false, fmt.Errorf("type %q: want a lowercase word such as ban", typ)
	}
	if len(str(ld.Scenario)) > 512 {
		return model.Decision{}, false, errors.New("scenario too long")
	}
	return model.Decision{
		Value: model.Canonical(v), Type: typ, Origin: origin, Scenario: str(ld.Scenario),
		Until: now.Add(dur), Simulated: ld.Simulated != nil && *ld.Simulated,
	}, true, nil
}

// parseLAPIDuration reads a Go duration, or CrowdSec's day form ("2d",
// "1d12h").
func parseLAPIDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 3650 {
		return 0, fmt.Errorf("duration %q: bad day count", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, err
		}
		d += r
	}
	return d, nil
}

// toLAPIAlert is a stored alert as GET /v1/alerts lists it.
func toLAPIAlert(rec store.AlertRecord, ds []store.Record, now time.Time) lapiAlert {
	a := rec.Alert
	ptr := func(s string) *string { return &s }
	n := int32(a.EventsCount)
	zero := int32(0)
	sim := a.Simulated
	out := lapiAlert{
		ID: rec.ID, CreatedAt: rec.Created.UTC().Format(time.RFC3339),
		Scenario: ptr(a.Scenario), ScenarioHash: ptr(a.ScenarioHash), ScenarioVersion: ptr(a.ScenarioVersion),
		Message: ptr(a.Message), EventsCount: &n, Capacity: &zero, Leakspeed: ptr(""),
		Simulated: &sim, Remediation: a.Remediation, MachineID: a.Labels["machine"],
		StartAt: ptr(a.Start.UTC().Format(time.RFC3339)), StopAt: ptr(a.Stop.UTC().Format(time.RFC3339)),
		Source: &lapiSource{Scope: ptr(a.Scope), Value: ptr(a.Value)},
		Events: []*lapiEvent{}, Decisions: []*lapiAlertDecision{},
	}
	if a.Source.IsValid() {
		if a.Source.Bits() == a.Source.Addr().BitLen() {
			out.Source.IP = a.Source.Addr().String()
		} else {
			out.Source.Range = a.Source.String()
		}
	}
	for k, v := range a.Meta {
		out.Meta = append(out.Meta, lapiMetaItem{Key: k, Value: v})
	}
	for _, ev := range a.Events {
		e := &lapiEvent{}
		for k, v := range ev {
			if k == "timestamp" {
				e.Timestamp = ptr(v)
				continue
			}
			e.Meta = append(e.Meta, lapiMetaItem{Key: k, Value: v})
		}
		out.Events = append(out.Events, e)
	}
	for _, r := range ds {
		l := toLAPI(r.Decision, now)
		d := &lapiAlertDecision{
			ID: l.ID, Duration: ptr(l.Duration), Origin: ptr(l.Origin), Scenario: ptr(l.Scenario),
			Scope: ptr(l.Scope), Type: ptr(l.Type), Until: l.Until, Value: ptr(l.Value),
			// Always set: cscli's tables dereference it.
			Simulated: &l.Simulated,
		}
		out.Decisions = append(out.Decisions, d)
	}
	return out
}
