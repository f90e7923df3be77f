package parse

import (
	"maps"
	"slices"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/grok"
)

// NodeResult is the outcome of one top-level node on one event, for the
// hub test runner and `moat explain`.
type NodeResult struct {
	Stage   string
	Parser  string
	Idx     int // order in which the parser first ran in its stage, from 1
	Success bool
	Evt     *detect.Event // a copy of the event after the node ran
	// Groks are the groks that matched in the node and its children.
	Groks []GrokHit
}

// GrokHit is a grok pattern that matched, and how.
type GrokHit struct {
	Pattern string
	// Tier serves the pattern first; Served answered this time (a later
	// tier when an earlier one gave up on the input).
	Tier, Served grok.Tier
}

// Trace collects NodeResults; nil disables tracing.
type Trace struct {
	Results []NodeResult
	idx     map[string]map[string]int
}

func (t *Trace) add(stage, parser string, ok bool, evt *detect.Event, hits []GrokHit) {
	if t.idx == nil {
		t.idx = map[string]map[string]int{}
	}
	m := t.idx[stage]
	if m == nil {
		m = map[string]int{}
		t.idx[stage] = m
	}
	i, seen := m[parser]
	if !seen {
		i = len(m) + 1
		m[parser] = i
	}
	t.Results = append(t.Results, NodeResult{Stage: stage, Parser: parser, Idx: i, Success: ok, Evt: CloneEvent(evt), Groks: slices.Clone(hits)})
}

// CloneEvent deep-copies an event's maps.
func CloneEvent(e *detect.Event) *detect.Event {
	c := *e
	c.Parsed = maps.Clone(e.Parsed)
	c.Meta = maps.Clone(e.Meta)
	c.Enriched = maps.Clone(e.Enriched)
	c.Unmarshaled = cloneAny(e.Unmarshaled).(map[string]any)
	c.Line.Labels = maps.Clone(e.Line.Labels)
	return &c
}

func cloneAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return map[string]any{}
		}
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = cloneAny(v)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, v := range x {
			s[i] = cloneAny(v)
		}
		return s
	}
	return v
}

// Parse runs the event through every stage. It returns false when a stage
// had no successful node (the event is then not poured into scenarios).
// Not safe for concurrent use.
func (p *Pipeline) Parse(evt *detect.Event) bool {
	return p.ParseTrace(evt, nil)
}

// ParseTrace is Parse that records each node's result in tr.
func (p *Pipeline) ParseTrace(evt *detect.Event, tr *Trace) bool {
	return p.runOn(run{evt: evt, root: evt}, tr)
}

// ProcessOverflow runs postoverflow stages on an overflow. It returns
// false when a stage had no successful node; whitelisting shows in
// o.Overflow.Whitelisted.
func (p *Pipeline) ProcessOverflow(o *OverflowEvent, tr *Trace) bool {
	return p.runOn(run{evt: &o.Event, root: o, ov: o}, tr)
}

// runOn runs the stages on the event of start in the pipeline's reused
// run state.
func (p *Pipeline) runOn(start run, tr *Trace) bool {
	r := &p.run
	*r = start
	r.p, r.vars, r.tracing = p, &p.vars, tr != nil
	defer func() {
		p.vars.Unbind()
		*r = run{}
	}()
	return p.runStages(r, tr)
}

func (p *Pipeline) runStages(r *run, tr *Trace) bool {
	evt := r.evt
	if len(p.stages) == 0 {
		return true
	}
	if evt.Stage == "" {
		evt.Stage = p.stages[0]
	}
	evt.Process = false
	// proxied: the trusted-proxy rewrite decided for this event.
	proxied := p.proxy == nil || r.ov != nil
	for si, stage := range p.stages {
		cur := p.stageIndex(evt.Stage)
		if cur > si {
			continue // the event was injected past this stage
		}
		if evt.Stage != stage {
			return false
		}
		stageOK := false
		for _, n := range p.nodes[si] {
			r.input.valid = false
			ok, err := n.process(r)
			if err != nil {
				ok = false
			}
			if tr != nil {
				tr.add(stage, n.name, ok, evt, r.hits)
				r.hits = r.hits[:0]
			}
			if ok {
				stageOK = true
				if n.onSuccess == "next_stage" {
					break
				}
			}
			if evt.Stage != stage {
				break
			}
		}
		if !stageOK {
			return false
		}
		if !proxied {
			proxied = p.proxy.apply(evt)
		}
	}
	evt.Process = true
	return true
}

// NodeStat counts how a top-level parser node fared.
type NodeStat struct {
	Stage, Parser string
	Hits          uint64 // events that passed the filter
	Parsed        uint64 // events the node succeeded on
}

// Stats returns per-node counters, in stage order.
func (p *Pipeline) Stats() []NodeStat {
	var out []NodeStat
	for si, ns := range p.nodes {
		for _, n := range ns {
			out = append(out, NodeStat{Stage: p.stages[si], Parser: n.name, Hits: n.hits.Load(), Parsed: n.ok.Load()})
		}
	}
	return out
}

// GrokPatterns counts the compiled grok patterns per tier that serves
// them first.
func (p *Pipeline) GrokPatterns() grok.TierCounts { return p.grok.Counts() }

// Unavailable counts enricher calls skipped for lack of a database.
func (p *Pipeline) Unavailable() uint64 { return p.unavailable.Load() }
