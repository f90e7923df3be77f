// Package profile turns alerts into decisions with CrowdSec-format
// profiles.yaml files: a list of YAML documents, each with expr filters
// over the alert, the decisions to take, an optional duration expression
// (for escalating repeat offenders) and on_success/on_failure flow control.
// Expressions are compiled once, when the file is loaded.
package profile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// Counter answers the history questions duration expressions ask.
type Counter interface {
	// CountDecisions counts decisions taken on value since a time.
	CountDecisions(ctx context.Context, value string, since time.Time) (int, error)
}

// Error is a profile file error at a line, in the form of every moat loader.
type Error = yamlerr.Error

// rawProfile is one YAML document as written.
type rawProfile struct {
	Name          string        `yaml:"name"`
	Debug         bool          `yaml:"debug"`
	Filters       []string      `yaml:"filters"`
	Decisions     []rawDecision `yaml:"decisions"`
	DurationExpr  string        `yaml:"duration_expr"`
	Notifications []string      `yaml:"notifications"`
	OnSuccess     string        `yaml:"on_success"`
	OnFailure     string        `yaml:"on_failure"`
	// DurationEscalation and Recidive are moat's own keys (escalation.go).
	DurationEscalation *rawEscalation `yaml:"duration_escalation"`
	Recidive           *rawRecidive   `yaml:"recidive"`
}

type rawDecision struct {
	Type     string `yaml:"type"`
	Duration string `yaml:"duration"`
	Scope    string `yaml:"scope"`
	// Ports and Protocol are moat's own keys: a ban of the scenario's
	// service only, like a fail2ban jail's.
	Ports    []uint16 `yaml:"ports"`
	Protocol string   `yaml:"protocol"`
}

// Decision is a decision template of a profile.
type Decision struct {
	Type     string
	Duration time.Duration
	// Forever is duration: forever, a decision without expiry.
	Forever bool
	Scope   string // "" takes the alert's scope
	// Ports, when set, scope the ban to these destination ports of
	// Protocol ("tcp", "udp"; "" both).
	Ports    []uint16
	Protocol string
}

// Profile is one compiled profile.
type Profile struct {
	Name      string
	Debug     bool
	Decisions []Decision
	OnSuccess string
	OnFailure string
	// Notifications name the channels (moat.yaml notifications:) that
	// hear of the alerts this profile matches.
	Notifications []string
	// Escalation and Recidive, when set, lengthen repeat offenders' bans.
	Escalation *Escalation
	Recidive   *Recidive

	file         string
	notifyLines  []int
	filters      []*vm.Program
	filterSrc    []string
	durationExpr *vm.Program
}

// Set is an ordered list of profiles, evaluated first to last.
type Set struct {
	Profiles []*Profile
	// Rand, when set, replaces math/rand/v2's Float64 for the jitter of
	// escalated durations.
	Rand func() float64
}

// Load reads and compiles a profiles file.
func Load(path string) (*Set, error) {
	data, err := yamlerr.ReadFile(path, yamlerr.MaxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("load profiles: %w", err)
	}
	return Parse(path, data)
}

// Parse compiles the profiles in data; file names it in errors.
func Parse(file string, data []byte) (*Set, error) {
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	set := &Set{}
	names := map[string]bool{}
	for {
		var raw rawProfile
		err := strict.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, yamlerr.Wrap(file, err)
		}
		var doc yaml.Node
		if err := nodes.Decode(&doc); err != nil {
			return nil, yamlerr.Wrap(file, err)
		}
		p, err := compile(file, raw, &doc)
		if err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, &Error{File: file, Line: lineOf(&doc, "name", -1), Msg: fmt.Sprintf("duplicate profile name %q", p.Name)}
		}
		names[p.Name] = true
		set.Profiles = append(set.Profiles, p)
	}
	if len(set.Profiles) == 0 {
		return nil, &Error{File: file, Msg: "no profiles"}
	}
	return set, nil
}

// lineOf finds the line of key (and of its idx-th item when idx >= 0) in
// a document, or the document's line.
func lineOf(doc *yaml.Node, key string, idx int) int {
	if idx >= 0 {
		return yamlerr.LineOf(doc, key, idx)
	}
	return yamlerr.LineOf(doc, key)
}

func exprOptions() []expr.Option {
	return []expr.Option{expr.Env(Env{}), expr.Optimize(true)}
}

func compile(file string, raw rawProfile, doc *yaml.Node) (*Profile, error) {
	bad := func(key string, idx int, format string, args ...any) error {
		return &Error{File: file, Line: lineOf(doc, key, idx), Msg: fmt.Sprintf(format, args...)}
	}
	if raw.Name == "" {
		return nil, bad("name", -1, "profile without a name")
	}
	p := &Profile{Name: raw.Name, Debug: raw.Debug, OnSuccess: raw.OnSuccess, OnFailure: raw.OnFailure, file: file}
	for i, n := range raw.Notifications {
		if n == "" {
			return nil, bad("notifications", i, "profile %s: empty notification name", raw.Name)
		}
		p.Notifications = append(p.Notifications, n)
		p.notifyLines = append(p.notifyLines, lineOf(doc, "notifications", i))
	}
	switch raw.OnSuccess {
	case "", "continue", "break":
	default:
		return nil, bad("on_success", -1, "profile %s: on_success %q: want break or continue", raw.Name, raw.OnSuccess)
	}
	switch raw.OnFailure {
	case "", "continue", "break":
	default:
		return nil, bad("on_failure", -1, "profile %s: on_failure %q: want break or continue", raw.Name, raw.OnFailure)
	}
	if len(raw.Filters) == 0 {
		return nil, bad("filters", -1, "profile %s: no filters", raw.Name)
	}
	for i, f := range raw.Filters {
		prog, err := expr.Compile(f, append(exprOptions(), expr.AsBool())...)
		if err != nil {
			return nil, bad("filters", i, "profile %s: filter %q: %v", raw.Name, f, firstLine(err))
		}
		p.filters = append(p.filters, prog)
		p.filterSrc = append(p.filterSrc, f)
	}
	for i, d := range raw.Decisions {
		dur, forever, err := model.ParseDuration(d.Duration)
		if err != nil {
			return nil, bad("decisions", i, "profile %s: decision duration %q: want a positive duration like 4h or 7d, or forever", raw.Name, d.Duration)
		}
		typ := d.Type
		if typ == "" {
			typ = "ban"
		}
		switch strings.ToLower(d.Scope) {
		case "", "ip", "range":
		default:
			return nil, bad("decisions", i, "profile %s: decision scope %q: moat decides on Ip and Range only", raw.Name, d.Scope)
		}
		ports, err := model.NormalizePorts(d.Ports)
		if err == nil {
			err = model.CheckProtocol(d.Protocol, ports)
		}
		if err != nil {
			return nil, bad("decisions", i, "profile %s: decision %v (want ports: [1-65535, ...], protocol: tcp or udp)", raw.Name, err)
		}
		p.Decisions = append(p.Decisions, Decision{Type: typ, Duration: dur, Forever: forever, Scope: d.Scope, Ports: ports, Protocol: d.Protocol})
	}
	if raw.DurationExpr != "" {
		prog, err := expr.Compile(raw.DurationExpr, append(exprOptions(), expr.AsKind(reflect.String))...)
		if err != nil {
			return nil, bad("duration_expr", -1, "profile %s: duration_expr: %v", raw.Name, firstLine(err))
		}
		p.durationExpr = prog
	}
	if raw.DurationEscalation != nil {
		if p.durationExpr != nil {
			return nil, bad("duration_escalation", -1, "profile %s: duration_escalation and duration_expr both set: keep one", raw.Name)
		}
		e, err := parseEscalation(raw.DurationEscalation, func(key, format string, args ...any) error {
			return &Error{File: file, Line: yamlerr.LineOf(doc, "duration_escalation", key), Msg: "profile " + raw.Name + ": " + fmt.Sprintf(format, args...)}
		})
		if err != nil {
			return nil, err
		}
		p.Escalation = e
	}
	if raw.Recidive != nil {
		r, err := parseRecidive(raw.Recidive, func(key, format string, args ...any) error {
			return &Error{File: file, Line: yamlerr.LineOf(doc, "recidive", key), Msg: "profile " + raw.Name + ": " + fmt.Sprintf(format, args...)}
		})
		if err != nil {
			return nil, err
		}
		p.Recidive = r
	}
	return p, nil
}

// CheckNotifications reports the first notification a profile names that
// known does not know, at its line in the profiles file.
func (s *Set) CheckNotifications(known func(name string) bool) error {
	for _, p := range s.Profiles {
		for i, n := range p.Notifications {
			if !known(n) {
				return &Error{File: p.file, Line: p.notifyLines[i], Msg: fmt.Sprintf("profile %s: notification %q: no such channel under notifications: in moat.yaml", p.Name, n)}
			}
		}
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Outcome is what the profiles decided for one alert.
type Outcome struct {
	// Decisions carry no ID yet.
	Decisions []model.Decision
	// Profile is the name of the last profile that matched.
	Profile string
	// Trace explains the evaluation of profiles with debug: true.
	Trace []string
	// Warnings are problems that did not stop a decision (a duration
	// expression that failed falls back to the profile's duration).
	Warnings []string
	// Notifications are the channels of every profile that matched, in
	// order, each once.
	Notifications []string
}

// Decide runs the profiles on a. c answers history questions; it may be
// nil when no profile uses them.
func (s *Set) Decide(ctx context.Context, a model.Alert, c Counter, now time.Time) (Outcome, error) {
	var out Outcome
	st := &state{ctx: ctx, counter: c, now: now}
	env := Env{Alert: newAlert(a), st: st}
	for _, p := range s.Profiles {
		matched := false
		for i, prog := range p.filters {
			v, err := vm.Run(prog, env)
			if err == nil {
				err = st.err
			}
			if err != nil {
				return Outcome{}, fmt.Errorf("profile %s: filter %q: %w", p.Name, p.filterSrc[i], err)
			}
			if b, _ := v.(bool); b {
				matched = true
				break
			}
		}
		if p.Debug {
			out.Trace = append(out.Trace, fmt.Sprintf("profile %s: alert %s %s: matched=%v", p.Name, a.Scenario, a.Value, matched))
		}
		if !matched {
			if p.OnFailure == "break" {
				break
			}
			continue
		}
		out.Profile = p.Name
		for _, n := range p.Notifications {
			if !slices.Contains(out.Notifications, n) {
				out.Notifications = append(out.Notifications, n)
			}
		}
		ds, err := p.decisions(env, a, now, s.random(), &out)
		if err != nil {
			return Outcome{}, err
		}
		out.Decisions = append(out.Decisions, ds...)
		if p.OnSuccess == "break" {
			break
		}
	}
	return out, nil
}

func (p *Profile) decisions(env Env, a model.Alert, now time.Time, rnd func() float64, out *Outcome) ([]model.Decision, error) {
	if !a.Source.IsValid() {
		// Custom scopes (users, countries) cannot be banned in the kernel.
		if p.Debug {
			out.Trace = append(out.Trace, fmt.Sprintf("profile %s: scope %q of %s has no address: no decision", p.Name, a.Scope, a.Value))
		}
		return nil, nil
	}
	var ds []model.Decision
	for _, spec := range p.Decisions {
		dur, forever := spec.Duration, spec.Forever
		// A scenario override's ban duration is set for this scenario
		// alone: it replaces the profile's duration and duration_expr;
		// duration_escalation and recidive still build on it.
		if a.Duration > 0 {
			dur, forever = a.Duration, false
		}
		if p.durationExpr != nil && a.Duration == 0 {
			v, err := vm.Run(p.durationExpr, env)
			if err == nil {
				err = env.st.err
			}
			if err != nil {
				return nil, fmt.Errorf("profile %s: duration_expr: %w", p.Name, err)
			}
			s, _ := v.(string)
			d, f, perr := model.ParseDuration(s)
			switch {
			case perr != nil:
				out.Warnings = append(out.Warnings, fmt.Sprintf("profile %s: duration_expr gave %q, not a positive duration: using %s", p.Name, s, model.FormatDuration(dur)))
			default:
				dur, forever = d, f
			}
		}
		reason := a.Message
		if p.Escalation != nil || p.Recidive != nil {
			var why string
			var err error
			dur, forever, why, err = p.escalate(env.st.ctx, env.st.counter, model.ValueString(a.Source), dur, forever, now, rnd)
			if err != nil {
				return nil, err
			}
			if why != "" {
				reason = why + ": " + a.Message
				if p.Debug {
					out.Trace = append(out.Trace, fmt.Sprintf("profile %s: %s %s", p.Name, a.Value, why))
				}
			}
		}
		until := now.Add(dur)
		if forever {
			until = time.Time{}
		}
		value := a.Source
		if strings.EqualFold(spec.Scope, model.ScopeRange) && value.Bits() == value.Addr().BitLen() {
			if p.Debug {
				out.Trace = append(out.Trace, fmt.Sprintf("profile %s: Range decision on single address %s: taken as the address", p.Name, a.Value))
			}
		}
		d := model.Decision{
			Value:     value,
			Type:      spec.Type,
			Origin:    model.OriginLocal,
			Scenario:  a.Scenario,
			Reason:    reason,
			Until:     until,
			Simulated: a.Simulated,
			ReadAt:    a.ReadAt,
			Ports:     spec.Ports,
			Protocol:  spec.Protocol,
		}
		if p.Debug {
			out.Trace = append(out.Trace, fmt.Sprintf("profile %s: %s %s for %s", p.Name, d.Type, a.Value, durationText(dur, forever)))
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// state is what helper methods need at run time; the first error a helper
// hits is kept and fails the evaluation.
type state struct {
	ctx     context.Context
	counter Counter
	now     time.Time
	err     error
}

func (st *state) fail(err error) {
	if st.err == nil {
		st.err = err
	}
}

// Env is the expression environment: the alert and CrowdSec's helpers.
type Env struct {
	Alert *Alert
	st    *state
}

// GetDecisionsCount counts every decision ever taken on value (within the
// store's retention).
func (e Env) GetDecisionsCount(value string) int {
	return e.count(value, time.Time{})
}

// GetDecisionsSinceCount counts decisions on value within the last since
// (a Go duration such as "24h").
func (e Env) GetDecisionsSinceCount(value, since string) int {
	d, err := time.ParseDuration(since)
	if err != nil {
		e.st.fail(fmt.Errorf("GetDecisionsSinceCount: %w", err))
		return 0
	}
	return e.count(value, e.st.now.Add(-d))
}

func (e Env) count(value string, since time.Time) int {
	if e.st == nil || e.st.counter == nil {
		return 0
	}
	n, err := e.st.counter.CountDecisions(e.st.ctx, canonicalValue(value), since)
	if err != nil {
		e.st.fail(err)
	}
	return n
}

// canonicalValue writes value as the store does, so "::ffff:1.2.3.4" and
// "1.2.3.4" count the same decisions.
func canonicalValue(v string) string {
	if p, err := model.ParseValue(v); err == nil {
		return model.ValueString(p)
	}
	return v
}

// Sprintf is fmt.Sprintf.
func (e Env) Sprintf(format string, args ...any) string {
	return fmt.Sprintf(format, args...)
}

// ToLower, Lower and Upper change case.
func (e Env) ToLower(s string) string { return strings.ToLower(s) }
func (e Env) Lower(s string) string   { return strings.ToLower(s) }
func (e Env) Upper(s string) string   { return strings.ToUpper(s) }

// IpInRange reports whether ip is inside cidr.
func (e Env) IpInRange(ip, cidr string) bool {
	a, err1 := netip.ParseAddr(ip)
	p, err2 := netip.ParsePrefix(cidr)
	return err1 == nil && err2 == nil && p.Contains(a.Unmap())
}

// Alert is the alert as expressions see it, with CrowdSec's accessors.
type Alert struct {
	Scenario        string
	ScenarioVersion string
	Message         string
	Remediation     bool
	Simulated       bool
	EventsCount     int
	Meta            map[string]string
	Labels          map[string]string
	Source          Source
	StartAt         time.Time
	StopAt          time.Time
}

// Source is the alert's source.
type Source struct {
	Scope string
	Value string
	IP    string
	Range string
}

func newAlert(a model.Alert) *Alert {
	v := &Alert{
		Scenario: a.Scenario, ScenarioVersion: a.ScenarioVersion, Message: a.Message,
		Remediation: a.Remediation, Simulated: a.Simulated, EventsCount: a.EventsCount,
		Meta: a.Meta, Labels: a.Labels, StartAt: a.Start, StopAt: a.Stop,
		Source: Source{Scope: a.Scope, Value: a.Value},
	}
	if a.Source.IsValid() {
		if a.Source.Bits() == a.Source.Addr().BitLen() {
			v.Source.IP = a.Source.Addr().String()
		} else {
			v.Source.Range = a.Source.String()
		}
	}
	return v
}

// GetScope is the source's scope ("Ip", "Range", ...).
func (a *Alert) GetScope() string { return a.Source.Scope }

// GetValue is the source's value.
func (a *Alert) GetValue() string { return a.Source.Value }

// GetScenario is the scenario's name.
func (a *Alert) GetScenario() string { return a.Scenario }

// GetEventsCount is how many events filled the bucket.
func (a *Alert) GetEventsCount() int { return a.EventsCount }

// GetMeta returns a meta value of the alert.
func (a *Alert) GetMeta(key string) string { return a.Meta[key] }

func durationText(d time.Duration, forever bool) string {
	if forever {
		return model.Forever
	}
	return model.FormatDuration(d)
}
