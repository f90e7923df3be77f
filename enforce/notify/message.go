package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Message is what templates see: one or more alerts grouped into one
// message (Alert is the first), with their decisions.
type Message struct {
	Channel string  `json:"channel"`
	Host    string  `json:"host"`
	Test    bool    `json:"test,omitempty"`
	Alerts  []Alert `json:"alerts"`
	Alert   Alert   `json:"-"`
}

// Alert is an alert as templates and the file channel see it.
type Alert struct {
	Scenario        string            `json:"scenario"`
	ScenarioVersion string            `json:"scenario_version,omitempty"`
	Message         string            `json:"message"`
	Scope           string            `json:"scope"`
	Value           string            `json:"value"`
	Start           time.Time         `json:"start"`
	Stop            time.Time         `json:"stop"`
	EventsCount     int               `json:"events_count"`
	Simulated       bool              `json:"simulated,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	// Events are the sampled events' meta, as stored with the alert.
	Events []map[string]string `json:"events,omitempty"`
	// Context is the alert context: per key of the hub's context files,
	// the distinct values taken from the events (model.Alert.Context).
	Context map[string][]string `json:"context,omitempty"`
	// Lines render Events one per line: the timestamp, then the other
	// fields as key=value, sorted.
	Lines     []string   `json:"-"`
	Decisions []Decision `json:"decisions"`
}

// Decision is a decision as templates see it.
type Decision struct {
	ID        int64         `json:"id,omitempty"`
	Value     string        `json:"value"`
	Type      string        `json:"type"`
	Origin    string        `json:"origin"`
	Until     time.Time     `json:"until,omitzero"`
	Duration  time.Duration `json:"-"`
	Simulated bool          `json:"simulated,omitempty"`
}

// maxEvents is how many of an alert's events a message carries: the
// first and last halves, as the store keeps them (store.MaxStoredEvents).
const maxEvents = 10

func newMessage(channel, host string, batch []item) *Message {
	m := &Message{Channel: channel, Host: host, Alerts: make([]Alert, 0, len(batch))}
	for _, it := range batch {
		m.Alerts = append(m.Alerts, newAlert(it.a, it.ds))
	}
	if len(m.Alerts) > 0 {
		m.Alert = m.Alerts[0]
	}
	return m
}

func newAlert(a model.Alert, ds []model.Decision) Alert {
	events := a.Events
	if n := len(events); n > maxEvents {
		events = append(slices.Clip(events[:maxEvents/2]), events[n-maxEvents/2:]...)
	}
	out := Alert{
		Scenario: a.Scenario, ScenarioVersion: a.ScenarioVersion, Message: a.Message,
		Scope: a.Scope, Value: a.Value, Start: a.Start, Stop: a.Stop, EventsCount: a.EventsCount,
		Simulated: a.Simulated, Meta: a.Meta, Labels: a.Labels, Events: events, Context: a.Context,
	}
	for _, ev := range events {
		out.Lines = append(out.Lines, eventLine(ev))
	}
	for _, d := range ds {
		dec := Decision{ID: d.ID, Value: model.ValueString(d.Value), Type: d.Type, Origin: string(d.Origin), Until: d.Until, Simulated: d.Simulated}
		if !d.Until.IsZero() {
			dec.Duration = d.Until.Sub(a.Stop).Round(time.Second)
			if a.Stop.IsZero() {
				dec.Duration = time.Until(d.Until).Round(time.Second)
			}
		}
		out.Decisions = append(out.Decisions, dec)
	}
	return out
}

// eventLine is one event on one line; values with spaces or quotes are
// quoted so a line reads back unambiguously.
func eventLine(ev map[string]string) string {
	var b strings.Builder
	if ts := ev["timestamp"]; ts != "" {
		b.WriteString(ts)
	}
	for _, k := range slices.Sorted(maps.Keys(ev)) {
		if k == "timestamp" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		v := ev[k]
		if v == "" || strings.ContainsAny(v, " \t\"=") || !strconv.CanBackquote(v) {
			v = strconv.Quote(v)
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

// funcs are the functions templates may call; config.NotifyTemplateFuncs
// lists the same names.
func funcs(host string) template.FuncMap {
	return template.FuncMap{
		// json is v as JSON, for webhook bodies: a string from a log
		// line can hold quotes and newlines.
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"join":  func(sep string, s []string) string { return strings.Join(s, sep) },
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"truncate": func(n int, s string) string {
			if len(s) <= n {
				return s
			}
			r := []rune(s)
			if len(r) <= n {
				return s
			}
			return string(r[:n]) + "…"
		},
		"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"duration": func(d time.Duration) string { return d.Round(time.Second).String() },
		"hostname": func() string { return host },
	}
}

// tmpl is a compiled template with the key it came from.
type tmpl struct {
	key string
	t   *template.Template
}

func compile(key, text, def string) (*tmpl, error) {
	if text == "" {
		text = def
	}
	// A meta key one alert lacks prints "<no value>": failing the
	// message (and each retry) over it would lose the alert.
	t, err := template.New(key).Funcs(funcs("")).Parse(text)
	if err != nil {
		return nil, &keyError{key: key, err: err}
	}
	return &tmpl{key: key, t: t}, nil
}

// render executes the template; limit bounds the output (a template
// ranging over a flood's events must not build a message of gigabytes).
func (t *tmpl) render(m *Message, limit int) ([]byte, error) {
	var b limitedBuffer
	b.limit = limit
	// Funcs again: hostname answers with the message's host.
	tt, err := t.t.Clone()
	if err != nil {
		return nil, &keyError{key: t.key, err: err}
	}
	if err := tt.Funcs(funcs(m.Host)).Execute(&b, m); err != nil {
		line, err := execError(t.key, err)
		return nil, &keyError{key: t.key, line: line, err: err}
	}
	return b.Bytes(), nil
}

// execError turns text/template's `template: body:1:9: executing "body"
// at <.X>: msg` into `line 1 of the template: at <.X>: msg`, and returns
// the line (0 when err says none).
func execError(key string, err error) (int, error) {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: "+key+":")
	if !ok {
		return 0, err
	}
	pos, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, err
	}
	ls, _, _ := strings.Cut(pos, ":")
	line, perr := strconv.Atoi(ls)
	if perr != nil {
		return 0, err
	}
	rest = strings.TrimPrefix(rest, fmt.Sprintf("executing %q ", key))
	return line, fmt.Errorf("line %d of the template: %s", line, rest)
}

// maxRender bounds a rendered body.
const maxRender = 1 << 20

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, fmt.Errorf("rendered message over %d bytes", b.limit)
	}
	return b.Buffer.Write(p)
}

// SampleAlert is the alert moat notifications test sends: an SSH brute
// force from a documentation address.
func SampleAlert(now time.Time) model.Alert {
	src := netip.MustParsePrefix("198.51.100.23/32")
	var events []map[string]string
	for i := range 6 {
		events = append(events, map[string]string{
			"timestamp":   now.Add(time.Duration(i-6) * time.Second).UTC().Format(time.RFC3339),
			"source_ip":   "198.51.100.23",
			"service":     "ssh",
			"log_type":    "ssh_failed-auth",
			"target_user": "root",
		})
	}
	return model.Alert{
		Scenario: "crowdsecurity/ssh-bf", ScenarioVersion: "0.3",
		Message: "Ip 198.51.100.23 performed 'crowdsecurity/ssh-bf' (6 events over 5s) (moat notifications test)",
		Scope:   model.ScopeIP, Value: "198.51.100.23", Source: src,
		Start: now.Add(-6 * time.Second), Stop: now, EventsCount: 6,
		Meta: maps.Clone(events[5]), Events: events, Labels: map[string]string{"test": "true"},
		Context:     map[string][]string{"target_user": {"root", "admin"}},
		Remediation: true,
	}
}

func sampleDecisions(now time.Time) []model.Decision {
	return []model.Decision{{
		Value: netip.MustParsePrefix("198.51.100.23/32"), Type: "ban", Origin: model.OriginLocal,
		Scenario: "crowdsecurity/ssh-bf", Until: now.Add(4 * time.Hour),
	}}
}
