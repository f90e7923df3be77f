// Package action runs the commands configured under actions: in moat.yaml
// when a ban reaches the kernel or leaves it: an abuse report, a border
// router's ACL, a ticket. Actions are off the ban path: the decision
// service announces a ban only once the kernel holds it, and announcing
// only queues (a full queue drops the event and counts it, never waits).
// Each action's workers, at most its concurrency at once, run the command
// without a shell, its arguments and environment rendered from the event,
// under a timeout that kills the command's whole process group.
package action

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// Event is what an action's templates see: {{.Value}}, {{.Scenario}} ...
// The same fields reach the command's environment as MOAT_EVENT,
// MOAT_VALUE, and so on.
type Event struct {
	// Event is "ban" or "unban".
	Event string
	ID    int64
	// Value is the address or range; Scope "Ip" or "Range".
	Value, Scope string
	Type         string
	Scenario     string
	Reason       string
	Origin       string
	// Duration is the time the ban has left when the event happens
	// ("4h0m0s", "7d", 0s for an unban on expiry), or "forever".
	Duration string
	// Until is the ban's end in RFC 3339, empty for a ban forever.
	Until string
	// Restored marks a ban loaded from the store at start rather than
	// taken now.
	Restored bool
	// Ports ("22,2222") and Protocol ("tcp", "udp") scope a ban to a
	// service; empty for a ban of every port.
	Ports, Protocol string
}

func newEvent(kind string, d model.Decision, restored bool, now time.Time) Event {
	ev := Event{
		Event: kind, ID: d.ID, Value: d.ValueString(), Scope: d.ScopeName(),
		Type: d.Type, Scenario: d.Scenario, Reason: d.Reason, Origin: string(d.Origin), Restored: restored,
		Duration: model.Forever, Ports: model.FormatPorts(d.Ports), Protocol: d.Protocol,
	}
	if !d.Until.IsZero() {
		ev.Until = d.Until.UTC().Format(time.RFC3339)
		ev.Duration = model.FormatDuration(max(d.Until.Sub(now).Round(time.Second), 0))
		if ev.Duration == model.Forever {
			ev.Duration = "0s"
		}
	}
	return ev
}

// env is the event as environment variables.
func (ev Event) env() []string {
	return []string{
		"MOAT_EVENT=" + ev.Event, "MOAT_ID=" + strconv.FormatInt(ev.ID, 10),
		"MOAT_VALUE=" + ev.Value, "MOAT_SCOPE=" + ev.Scope, "MOAT_TYPE=" + ev.Type,
		"MOAT_SCENARIO=" + ev.Scenario, "MOAT_REASON=" + ev.Reason, "MOAT_ORIGIN=" + ev.Origin,
		"MOAT_DURATION=" + ev.Duration, "MOAT_UNTIL=" + ev.Until, "MOAT_RESTORED=" + strconv.FormatBool(ev.Restored),
		"MOAT_PORTS=" + ev.Ports, "MOAT_PROTOCOL=" + ev.Protocol,
	}
}

// Spec is one action, compiled.
type Spec struct {
	Name    string
	Command string
	Args    []*template.Template
	// Env are NAME=template pairs, sorted by name.
	Env      []envVar
	OnBan    bool
	OnUnban  bool
	Origins  []string
	Restored bool
	// Timeout bounds a run (default 30s); Concurrency runs at once
	// (default 2); Queue events waiting (default 1000).
	Timeout     time.Duration
	Concurrency int
	Queue       int
}

type envVar struct {
	name string
	tmpl *template.Template
}

// Compile builds a Spec from the configuration of action name. Templates
// run on a sample event, so one naming a field Event lacks fails here.
func Compile(name string, a config.Action) (*Spec, error) {
	s := &Spec{Name: name, Command: a.Command, Origins: a.Origins, Restored: a.Restored,
		Timeout: a.Timeout, Concurrency: a.Concurrency, Queue: a.Queue}
	if s.Timeout <= 0 {
		s.Timeout = 30 * time.Second
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 2
	}
	if s.Queue <= 0 {
		s.Queue = 1000
	}
	if len(a.On) == 0 {
		s.OnBan = true
	}
	for _, on := range a.On {
		s.OnBan = s.OnBan || on == config.ActionBan
		s.OnUnban = s.OnUnban || on == config.ActionUnban
	}
	sample := newEvent(config.ActionBan, model.Decision{ID: 1, Value: netip.MustParsePrefix("192.0.2.1/32"), Type: "ban", Origin: model.OriginLocal, Scenario: "crowdsecurity/ssh-bf", Until: time.Now().Add(4 * time.Hour)}, false, time.Now())
	for i, arg := range a.Args {
		t, err := template.New("args").Option("missingkey=error").Parse(arg)
		if err == nil {
			_, err = render(t, sample)
		}
		if err != nil {
			return nil, &KeyError{Keys: []any{"args", i}, Err: err}
		}
		s.Args = append(s.Args, t)
	}
	names := make([]string, 0, len(a.Env))
	for k := range a.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		t, err := template.New(k).Option("missingkey=error").Parse(a.Env[k])
		if err == nil {
			_, err = render(t, sample)
		}
		if err != nil {
			return nil, &KeyError{Keys: []any{"env", k}, Err: err}
		}
		s.Env = append(s.Env, envVar{name: k, tmpl: t})
	}
	return s, nil
}

// KeyError is a Compile error at a key of the action.
type KeyError struct {
	Keys []any
	Err  error
}

func (e *KeyError) Error() string {
	var b strings.Builder
	for i, k := range e.Keys {
		switch k := k.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		default:
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprint(&b, k)
		}
	}
	return b.String() + ": " + e.Err.Error()
}
func (e *KeyError) Unwrap() error { return e.Err }

func render(t *template.Template, ev Event) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, ev); err != nil {
		return "", err
	}
	// A NUL cannot pass through exec; nothing moat writes has one, but
	// a reason is free text.
	return strings.ReplaceAll(b.String(), "\x00", ""), nil
}

func (s *Spec) wants(kind string, d model.Decision, restored bool) bool {
	switch {
	case kind == config.ActionBan && !s.OnBan, kind == config.ActionUnban && !s.OnUnban:
		return false
	case restored && !s.Restored:
		return false
	case len(s.Origins) > 0 && !slices.Contains(s.Origins, string(d.Origin)):
		return false
	}
	return true
}

// Result is how a run ended, a label of the runs counter.
type Result string

// Results of a run.
const (
	ResultOK       Result = "ok"       // exit status 0
	ResultExit     Result = "exit"     // another exit status
	ResultTimeout  Result = "timeout"  // killed at its timeout
	ResultStart    Result = "start"    // the command could not start
	ResultTemplate Result = "template" // an argument failed to render
	ResultStopped  Result = "stopped"  // killed as the daemon stopped
)

// Stats is one action's counters.
type Stats struct {
	Name    string `json:"name"`
	Command string `json:"command"`
	// Queued is the events waiting, QueueCap the bound; Dropped the
	// events a full queue refused.
	Queued   int    `json:"queued"`
	QueueCap int    `json:"queue_cap"`
	Dropped  uint64 `json:"dropped"`
	// Runs counts finished runs by result; Exits by exit status (a
	// command killed by a signal counts as -1).
	Runs  map[Result]uint64 `json:"runs"`
	Exits map[int]uint64    `json:"exits"`
	// Seconds is the time spent running.
	Seconds float64 `json:"seconds"`
}

// runner is one action's queue and counters.
type runner struct {
	spec    *Spec
	q       chan Event
	dropped atomic.Uint64

	mu      sync.Mutex
	runs    map[Result]uint64
	exits   map[int]uint64
	seconds float64
}

func (r *runner) enqueue(ev Event) {
	select {
	case r.q <- ev:
	default:
		r.dropped.Add(1)
	}
}

func (r *runner) record(res Result, code int, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[res]++
	if res == ResultOK || res == ResultExit || res == ResultTimeout {
		r.exits[code]++
	}
	r.seconds += took.Seconds()
}

func (r *runner) stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stats{Name: r.spec.Name, Command: r.spec.Command, Queued: len(r.q), QueueCap: cap(r.q), Dropped: r.dropped.Load(),
		Runs: map[Result]uint64{}, Exits: map[int]uint64{}, Seconds: r.seconds}
	for k, v := range r.runs {
		st.Runs[k] = v
	}
	for k, v := range r.exits {
		st.Exits[k] = v
	}
	return st
}

// Manager holds the actions. Ban, Unban, Enforced and Restored are safe
// from any goroutine and never wait; Run runs the commands until its
// context ends.
type Manager struct {
	runners []*runner
	// OnError, when set, hears of each run that did not exit 0, with the
	// end of its output, for the daemon's log.
	OnError func(action string, ev Event, err error)
	// now is the clock (tests).
	now func() time.Time
}

// New returns a manager running specs.
func New(specs ...*Spec) *Manager {
	m := &Manager{now: time.Now}
	for _, s := range specs {
		m.runners = append(m.runners, &runner{spec: s, q: make(chan Event, s.Queue), runs: map[Result]uint64{}, exits: map[int]uint64{}})
	}
	return m
}

// FromConfig compiles every action cfg configures; an error names the
// action's key at its line in the configuration file.
func FromConfig(cfg *config.Config) (*Manager, error) {
	var specs []*Spec
	for _, name := range cfg.ActionNames() {
		s, err := Compile(name, cfg.Actions[name])
		if err != nil {
			var ke *KeyError
			if errors.As(err, &ke) {
				return nil, cfg.ActionError(name, err.Error(), ke.Keys...)
			}
			return nil, cfg.ActionError(name, err.Error())
		}
		if err := checkCommand(s.Command); err != nil {
			return nil, cfg.ActionError(name, err.Error(), "command")
		}
		specs = append(specs, s)
	}
	return New(specs...), nil
}

// Len is the number of actions.
func (m *Manager) Len() int {
	if m == nil {
		return 0
	}
	return len(m.runners)
}

func (m *Manager) announce(kind string, ds []model.Decision, restored bool) {
	if m == nil || len(m.runners) == 0 {
		return
	}
	now := m.now()
	for _, d := range ds {
		for _, r := range m.runners {
			if r.spec.wants(kind, d, restored) {
				r.enqueue(newEvent(kind, d, restored, now))
			}
		}
	}
}

// Enforced queues the actions of bans the kernel now holds (ban) or of
// decisions it dropped; it has decision.Service.Enforced's signature.
func (m *Manager) Enforced(ban bool, ds []model.Decision) {
	if ban {
		m.announce(config.ActionBan, ds, false)
		return
	}
	m.announce(config.ActionUnban, ds, false)
}

// Restored queues the ban actions that want bans restored from the store
// at start.
func (m *Manager) Restored(ds []model.Decision) {
	// A million bans load at start: look at them only when some action
	// wants them.
	if m == nil || !slices.ContainsFunc(m.runners, func(r *runner) bool { return r.spec.Restored }) {
		return
	}
	m.announce(config.ActionBan, ds, true)
}

// Stats returns every action's counters, in name order.
func (m *Manager) Stats() []Stats {
	if m == nil {
		return nil
	}
	out := make([]Stats, 0, len(m.runners))
	for _, r := range m.runners {
		out = append(out, r.stats())
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Run runs each action's commands, Concurrency at a time, until ctx ends;
// commands running then are killed.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range m.runners {
		for range r.spec.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ctx.Done():
						return
					case ev := <-r.q:
						m.run(ctx, r, ev)
					}
				}
			}()
		}
	}
	wg.Wait()
	return nil
}

func (m *Manager) run(ctx context.Context, r *runner, ev Event) {
	start := time.Now()
	res, code, err := execute(ctx, r.spec, ev)
	r.record(res, code, time.Since(start))
	if err != nil && m.OnError != nil && res != ResultStopped {
		m.OnError(r.spec.Name, ev, err)
	}
}
