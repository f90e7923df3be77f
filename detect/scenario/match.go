package scenario

import (
	"encoding/binary"
	"strings"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
)

// A pour has two halves. Matching runs the scenarios' filters and groupby
// expressions: it reads the event (a filter may set meta on it) and
// nothing of the buckets, so parse workers can match events side by side.
// Filling the buckets must then happen on one goroutine, in input order.
// On a hub with many HTTP scenarios, matching is most of a pour.
//
// Every pour matches first and fills second, the serial one too, so a
// bucket's overflow sees the event as all filters left it, however the
// work was split.

// Matcher matches events to scenarios and buckets. It is not safe for
// concurrent use: each worker takes its own from NewMatcher.
type Matcher struct {
	set  *Set
	vars exprenv.EvtVars
	memo exprenv.Memo
	// byTuple caches, per tuple of the values of the set's reqKeys, the
	// scenarios whose requirements hold: most filters are rejected
	// without running.
	byTuple  map[string][]*scenario
	tupleBuf []byte
	// guards are the set's (nil: none, or Options.NoGuards), guard
	// their state on the event at hand.
	guards *guards
	guard  *guardState
}

// Matches is what matching found for one event.
type Matches struct {
	hits []hit
	// errs and untimed are scenarios the event did not go to, for their
	// counters, which only the filling half writes.
	errs, untimed []*scenario
}

type hit struct {
	sc  *scenario
	key string
}

func (m *Matches) reset() {
	clear(m.hits)
	m.hits, m.errs, m.untimed = m.hits[:0], m.errs[:0], m.untimed[:0]
}

// NewMatcher returns a matcher for s's scenarios.
func (s *Set) NewMatcher() *Matcher {
	m := &Matcher{set: s, vars: exprenv.NewEvtVars((*detect.Event)(nil)), byTuple: map[string][]*scenario{}}
	if s.guards != nil {
		m.guards, m.guard = s.guards, newGuardState(s.guards)
	}
	return m
}

// MatchesAnywhere reports whether matching may run on another goroutine
// than the buckets: not when a filter or groupby reads or writes a stash,
// which would make an event's match depend on the events matched before.
func (s *Set) MatchesAnywhere() bool { return !s.crossEvent }

// Match finds the scenarios that take evt and the bucket key of each,
// into out.
func (m *Matcher) Match(evt *detect.Event, out *Matches) {
	out.reset()
	if evt == nil || evt.Whitelisted {
		return
	}
	s := m.set
	untimed := s.replay && evt.MarshaledTime == ""
	defer m.vars.Unbind()
	m.forget()
	g := m.guards
	for _, sc := range m.candidates(evt) {
		if g != nil && g.of[sc.idx] != nil && !g.passes(m.guard, sc, evt, &m.memo) {
			continue
		}
		ok, err := m.runBool(sc.filter, evt)
		if err != nil {
			out.errs = append(out.errs, sc)
			continue
		}
		if !ok {
			continue
		}
		if untimed && sc.kind != kindTrigger {
			out.untimed = append(out.untimed, sc)
			continue
		}
		key := ""
		if sc.groupby != nil {
			k, err := m.runString(sc.groupby, evt)
			if err != nil {
				out.errs = append(out.errs, sc)
				continue
			}
			key = k
		}
		out.hits = append(out.hits, hit{sc: sc, key: key})
	}
}

func (m *Matcher) candidates(evt *detect.Event) []*scenario {
	s := m.set
	b := m.tupleBuf[:0]
	for _, k := range s.reqKeys {
		v := reqValue(evt, k)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	m.tupleBuf = b
	if c, ok := m.byTuple[string(b)]; ok {
		return c
	}
	var c []*scenario
	for _, sc := range s.scenarios {
		if sc.meets(evt) {
			c = append(c, sc)
		}
	}
	if len(m.byTuple) >= byTupleMax {
		clear(m.byTuple)
	}
	m.byTuple[string(b)] = c
	return c
}

// forget drops what was computed on the event: it is a new one, or the
// VM ran on it and may have changed it (SetMeta).
func (m *Matcher) forget() {
	m.memo.Reset()
	if m.guard != nil {
		m.guard.next()
	}
}

func (m *Matcher) runBool(p *exprenv.Program, evt *detect.Event) (bool, error) {
	if v, ok := p.Bool(&m.memo, evt); ok {
		return v, nil
	}
	v, err := m.set.env.RunBool(p.VM, m.vars.Bind(evt))
	m.forget()
	return v, err
}

func (m *Matcher) runString(p *exprenv.Program, evt *detect.Event) (string, error) {
	if v, ok := p.String(&m.memo, evt); ok {
		return v, nil
	}
	out, err := m.set.env.Run(p.VM, m.vars.Bind(evt))
	m.forget()
	if err != nil {
		return "", err
	}
	return exprenv.ToString(out), nil
}

// PourMatchedOverflows is PourOverflows for an event a Matcher of this
// set has matched into ms.
func (s *Set) PourMatchedOverflows(evt *detect.Event, ms *Matches) []Overflow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs = s.outs[:0]
	s.fill(evt, ms)
	return s.takeOuts()
}

// fill is the bucket half of a pour.
func (s *Set) fill(evt *detect.Event, ms *Matches) {
	if evt == nil || evt.Whitelisted {
		return
	}
	t := eventTime(evt)
	s.advance(t)
	for _, sc := range ms.errs {
		sc.stats.Errors++
	}
	for _, sc := range ms.untimed {
		sc.stats.Untimed++
	}
	if len(ms.hits) == 0 {
		return
	}
	defer s.vars.Unbind()
	s.memo.Reset()
	for _, h := range ms.hits {
		s.pourInto(h.sc, h.key, evt, t)
	}
}

// usesStash reports whether an expression reads or writes a stash, state
// one event leaves for the next.
func usesStash(src string) bool {
	return strings.Contains(src, "GetFromStash") || strings.Contains(src, "SetInStash")
}
