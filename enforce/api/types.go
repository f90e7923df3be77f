package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Decision is a decision as the admin endpoints show it.
type Decision struct {
	ID        int64     `json:"id"`
	AlertID   int64     `json:"alert_id,omitempty"`
	Value     string    `json:"value"`
	Scope     string    `json:"scope"`
	Type      string    `json:"type"`
	Origin    string    `json:"origin"`
	Scenario  string    `json:"scenario,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Until     time.Time `json:"until,omitzero"`
	Simulated bool      `json:"simulated,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`

	// Forever marks a decision without expiry (no until).
	Forever bool `json:"forever,omitempty"`

	// Ports ("25,465") scope the ban to these destination ports of
	// Protocol ("tcp", "udp"; empty: both).
	Ports    string `json:"ports,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

func fromRecord(r store.Record) Decision {
	d := fromModel(r.Decision)
	d.AlertID, d.CreatedAt, d.DeletedAt = r.AlertID, r.Created, r.Deleted
	return d
}

func fromModel(m model.Decision) Decision {
	return Decision{
		ID: m.ID, Value: m.ValueString(), Scope: m.ScopeName(),
		Type: m.Type, Origin: string(m.Origin), Scenario: m.Scenario, Reason: m.Reason,
		Until: m.Until, Forever: m.Until.IsZero(), Simulated: m.Simulated,
		Ports: model.FormatPorts(m.Ports), Protocol: m.Protocol,
	}
}

func fromModels(ms []model.Decision) []Decision {
	out := make([]Decision, 0, len(ms))
	for _, m := range ms {
		out = append(out, fromModel(m))
	}
	return out
}

// NewDecision is one decision to add.
type NewDecision struct {
	// Value is an address or a CIDR range; with Scope country or as, a
	// country code or an AS number.
	Value string `json:"value"`
	// Scope is empty (ip or range, from the value), ip, range, country or
	// as, any case; country and as need the daemon's GeoIP database.
	Scope string `json:"scope,omitempty"`
	// Type defaults to "ban".
	Type string `json:"type,omitempty"`
	// Duration is a Go duration ("4h"), days ("7d") or "forever"; required.
	Duration  string `json:"duration"`
	Reason    string `json:"reason,omitempty"`
	Scenario  string `json:"scenario,omitempty"`
	Simulated bool   `json:"simulated,omitempty"`
	// Ports ("25,465") and Protocol ("tcp", "udp"; empty: both) scope
	// the ban to a service; empty Ports bans every port.
	Ports    string `json:"ports,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// AddDecisionsRequest is the body of POST /v1/admin/decisions.
type AddDecisionsRequest struct {
	Decisions []NewDecision `json:"decisions"`
}

// DeleteResponse answers a delete.
type DeleteResponse struct {
	Deleted   int        `json:"deleted"`
	Decisions []Decision `json:"decisions"`
}

// MaxDecisionsPerRequest bounds one add request.
const MaxDecisionsPerRequest = 10000

// MaxDuration bounds a decision's duration (ten years).
const MaxDuration = 10 * 365 * 24 * time.Hour

// decodeJSON decodes exactly one JSON value with unknown fields refused.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON: trailing data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON: trailing data after the object")
	}
	return nil
}

// DecodeAddDecisions parses and checks the body of a decisions add: either
// everything in it is valid, or an error and no decisions.
func DecodeAddDecisions(r io.Reader, origin model.Origin, now time.Time) ([]model.Decision, error) {
	var req AddDecisionsRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if len(req.Decisions) == 0 {
		return nil, errors.New("no decisions")
	}
	if len(req.Decisions) > MaxDecisionsPerRequest {
		return nil, fmt.Errorf("%d decisions: at most %d per request", len(req.Decisions), MaxDecisionsPerRequest)
	}
	out := make([]model.Decision, 0, len(req.Decisions))
	for i, nd := range req.Decisions {
		p, geo, err := parseTarget(nd.Scope, nd.Value)
		if err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
		dur, forever, err := model.ParseDuration(nd.Duration)
		if err != nil || dur > MaxDuration {
			return nil, fmt.Errorf("decision %d: duration %q: want a positive Go duration up to %s, or forever", i, nd.Duration, MaxDuration)
		}
		typ := nd.Type
		if typ == "" {
			typ = "ban"
		}
		if !validWord(typ, 64) {
			return nil, fmt.Errorf("decision %d: type %q: want letters, digits, - or _", i, nd.Type)
		}
		// Types are compared exactly, here as by CrowdSec's bouncers: a
		// "BAN" would be stored, served and never enforced.
		if lower := strings.ToLower(typ); lower != typ {
			return nil, fmt.Errorf("decision %d: type %q: decision types are lowercase and matched exactly, so this one would never be enforced (did you mean %q?)", i, nd.Type, lower)
		}
		if len(nd.Reason) > 1024 || len(nd.Scenario) > 512 {
			return nil, fmt.Errorf("decision %d: reason or scenario too long", i)
		}
		d := model.Decision{Value: p, Geo: geo, Type: typ, Origin: origin, Scenario: nd.Scenario, Reason: nd.Reason, Until: now.Add(dur), Simulated: nd.Simulated}
		if forever {
			d.Until = time.Time{}
		}
		if d.Ports, err = model.ParsePorts(nd.Ports); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
		if err := model.CheckProtocol(nd.Protocol, d.Ports); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
		d.Protocol = nd.Protocol
		if err := decision.Validate(&d, now); err != nil {
			return nil, fmt.Errorf("decision %d: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// parseTarget reads what a new decision bans: an address or range, or
// with scope country or as, a country or an AS.
func parseTarget(scope, value string) (netip.Prefix, model.Geo, error) {
	switch strings.ToLower(scope) {
	case "", "ip", "range":
		p, err := model.ParseValue(value)
		if err != nil {
			return netip.Prefix{}, model.Geo{}, fmt.Errorf("value %q: want an IP address or CIDR range", value)
		}
		return p, model.Geo{}, nil
	case "country", "as":
		g, err := model.ParseGeo(scope, value)
		return netip.Prefix{}, g, err
	}
	return netip.Prefix{}, model.Geo{}, fmt.Errorf("scope %q: want ip, range, country or as", scope)
}

func validWord(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Alert is an alert as the admin endpoints show it, and as moat replay
// prints the alerts it raises: one schema for scripts to read. A replayed
// alert is never stored, so it has no ID and no creation time.
type Alert struct {
	ID              int64               `json:"id,omitempty"`
	CreatedAt       time.Time           `json:"created_at,omitzero"`
	Scenario        string              `json:"scenario"`
	ScenarioVersion string              `json:"scenario_version,omitempty"`
	Message         string              `json:"message,omitempty"`
	Scope           string              `json:"scope"`
	Value           string              `json:"value"`
	Start           time.Time           `json:"start_at,omitzero"`
	Stop            time.Time           `json:"stop_at,omitzero"`
	EventsCount     int                 `json:"events_count"`
	Remediation     bool                `json:"remediation"`
	Simulated       bool                `json:"simulated,omitempty"`
	Meta            map[string]string   `json:"meta,omitempty"`
	Labels          map[string]string   `json:"labels,omitempty"`
	Events          []map[string]string `json:"events,omitempty"`
	// Context is the alert context (model.Alert.Context): per key, the
	// values the hub's context files took from the events.
	Context   map[string][]string `json:"context,omitempty"`
	Decisions []int64             `json:"decisions,omitempty"`
}

func fromAlert(r store.AlertRecord, full bool) Alert {
	out := AlertOf(r.Alert)
	out.ID, out.CreatedAt, out.Decisions = r.ID, r.Created, r.Decisions
	if full {
		a := r.Alert
		out.Meta, out.Labels, out.Events, out.Context = a.Meta, a.Labels, a.Events, a.Context
	}
	return out
}

// AlertOf is an alert as a list shows it: without its meta, labels,
// events and context, which only inspect shows.
func AlertOf(a model.Alert) Alert {
	return Alert{
		Scenario: a.Scenario, ScenarioVersion: a.ScenarioVersion,
		Message: a.Message, Scope: a.Scope, Value: a.Value, Start: a.Start, Stop: a.Stop,
		EventsCount: a.EventsCount, Remediation: a.Remediation, Simulated: a.Simulated,
	}
}

// NewBouncer answers a bouncer add: the key is shown this once.
type NewBouncer struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// Bouncer is a registered bouncer.
type Bouncer struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	LastIP    string    `json:"last_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
}

// AllowRequest is the body of POST /v1/admin/allowlist.
type AllowRequest struct {
	Value  string `json:"value"`
	Reason string `json:"reason"`
	// AllowWide accepts a range wider than the ban limits (/8, /32); such
	// an entry lifts every ban inside it, so it takes an explicit yes.
	AllowWide bool `json:"allow_wide,omitempty"`
}

// AllowResponse answers an allowlist add.
type AllowResponse struct {
	Entry  decision.AllowEntry `json:"entry"`
	Lifted []Decision          `json:"lifted"`
}

// Status is what moat status shows. The daemon fills it through a
// StatusFunc; the server adds the store's counts and the decision
// service's counters.
type Status struct {
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Sources   []Source  `json:"sources"`
	Parsers   []string  `json:"parsers"`
	Scenarios []string  `json:"scenarios"`
	Backends  []Backend `json:"backends"`
	// Counters are free-form daemon counters (lines read, events, ...).
	Counters map[string]int64 `json:"counters,omitempty"`

	Store    store.Counts   `json:"store"`
	Service  decision.Stats `json:"service"`
	Bouncers []Bouncer      `json:"bouncers"`
	// GeoIP is absent when no GeoIP database is configured.
	GeoIP *GeoIPStatus `json:"geoip,omitempty"`
}

// GeoIPStatus is the GeoIP databases the daemon reads and the Country
// and AS bans built from them.
type GeoIPStatus struct {
	// City and ASN are the database files, "" for one not configured.
	City string `json:"city,omitempty"`
	ASN  string `json:"asn,omitempty"`
	// CountryNetworks and ASNetworks are the networks read for Country and
	// AS decisions and allowlist entries; 0 until one needs them.
	CountryNetworks int `json:"country_networks"`
	ASNetworks      int `json:"as_networks"`
	// Decisions are the Country and AS decisions enforced, Ranges the
	// ranges they ban in the kernel.
	Decisions int `json:"decisions"`
	Ranges    int `json:"ranges"`
}

// Source is a log source the daemon reads.
type Source struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Lines int64  `json:"lines"`
	Error string `json:"error,omitempty"`
}

// Backend is a kernel backend.
type Backend struct {
	Name    string `json:"name"`
	Mode    string `json:"mode,omitempty"`
	Entries int    `json:"entries"`
	Error   string `json:"error,omitempty"`
}

// crowdsecOrigin names moat's origins as CrowdSec does, so bouncers that
// filter or label by origin keep working.
func crowdsecOrigin(o model.Origin) string {
	switch o {
	case model.OriginLocal, model.OriginMachine:
		return "crowdsec"
	case model.OriginCLI:
		return "cscli"
	case model.OriginCommunity:
		return "CAPI"
	case model.OriginList:
		return "lists"
	}
	return string(o)
}

// lapiDecision is CrowdSec's models.Decision on the wire.
type lapiDecision struct {
	Duration  string `json:"duration"`
	ID        int64  `json:"id"`
	Origin    string `json:"origin"`
	Scenario  string `json:"scenario"`
	Scope     string `json:"scope"`
	Simulated bool   `json:"simulated,omitempty"`
	Type      string `json:"type"`
	Until     string `json:"until,omitempty"`
	Value     string `json:"value"`
}

// appendLAPI appends d as toLAPI(d, now) would marshal, without
// reflection: the startup stream writes a million of these.
func appendLAPI(b []byte, d model.Decision, now time.Time) []byte {
	l := toLAPI(d, now)
	b = append(b, `{"duration":`...)
	b = appendJSONString(b, l.Duration)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, l.ID, 10)
	b = append(b, `,"origin":`...)
	b = appendJSONString(b, l.Origin)
	b = append(b, `,"scenario":`...)
	b = appendJSONString(b, l.Scenario)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, l.Scope)
	if l.Simulated {
		b = append(b, `,"simulated":true`...)
	}
	b = append(b, `,"type":`...)
	b = appendJSONString(b, l.Type)
	if l.Until != "" {
		b = append(b, `,"until":`...)
		b = appendJSONString(b, l.Until)
	}
	b = append(b, `,"value":`...)
	b = appendJSONString(b, l.Value)
	return append(b, '}')
}

// appendJSONString quotes s for JSON; strings that need escaping take
// encoding/json's path, so the output is always what it would write.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// neverDuration is what a decision without expiry reports as its duration.
const neverDuration = MaxDuration

func toLAPI(d model.Decision, now time.Time) lapiDecision {
	out := lapiDecision{
		ID: d.ID, Origin: crowdsecOrigin(d.Origin), Scenario: d.Scenario, Scope: d.ScopeName(),
		Simulated: d.Simulated, Type: d.Type, Value: d.ValueString(),
	}
	if out.Scenario == "" {
		out.Scenario = "manual '" + d.Type + "'"
		if d.Reason != "" {
			out.Scenario += ": " + d.Reason
		}
	}
	if d.Until.IsZero() {
		out.Duration = neverDuration.String()
	} else {
		out.Duration = d.Until.Sub(now).Round(time.Millisecond).String()
		out.Until = d.Until.UTC().Format(time.RFC3339)
	}
	return out
}

// streamFilter is the query filters of /v1/decisions/stream.
type streamFilter struct {
	// simulated includes simulated decisions, which bouncers do not get
	// unless they ask (as with CrowdSec's LAPI).
	simulated    bool
	scopes       []string
	origins      []string
	containing   []string
	notContainig []string
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func (f streamFilter) match(d model.Decision) bool {
	if d.Simulated && !f.simulated {
		return false
	}
	if len(f.scopes) > 0 {
		ok := false
		for _, s := range f.scopes {
			ok = ok || strings.EqualFold(s, d.ScopeName())
		}
		if !ok {
			return false
		}
	}
	if len(f.origins) > 0 {
		ok := false
		for _, o := range f.origins {
			ok = ok || o == string(d.Origin) || o == crowdsecOrigin(d.Origin)
		}
		if !ok {
			return false
		}
	}
	if len(f.containing) > 0 {
		ok := false
		for _, s := range f.containing {
			ok = ok || strings.Contains(d.Scenario, s)
		}
		if !ok {
			return false
		}
	}
	for _, s := range f.notContainig {
		if strings.Contains(d.Scenario, s) {
			return false
		}
	}
	return true
}

// parsePrefixParam parses an address or range query parameter.
func parsePrefixParam(s string) (netip.Prefix, error) {
	p, err := model.ParseValue(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want an IP address or CIDR range", s)
	}
	return p, nil
}
