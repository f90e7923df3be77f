// Package engine glues hub parsers, scenarios and postoverflows into the
// detection pipeline the daemon and replays drive: a line goes in, alerts
// come out.
package engine

import (
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/alertctx"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/grok"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/internal/model"
)

// Config selects hub content and tunes the engine.
type Config struct {
	HubDir, PatternDir, DataDir string
	// HubOverlays are hub directories layered over HubDir (see hub.Open).
	HubOverlays []string
	// Items are collections, parsers, scenarios or postoverflows to enable;
	// empty enables everything in HubDir.
	Items []string
	// Selection, when set, names the files directly and Items is ignored.
	Selection *hub.Selection
	// Year is given to log dates without one; 0 means the read year.
	Year       int
	MaxBuckets int
	// Replay makes log timestamps drive buckets (cold logs); live reading
	// keeps the time the source gave.
	Replay bool
	// Simulated scenarios produce alerts marked Simulated.
	Simulated []string
	// Overrides tune scenarios without editing their hub files.
	Overrides []scenario.Override
	// Views keeps each overflow's View (hub asserts read it); without it
	// a view is only built for the postoverflows.
	Views bool
	// RegexpOnly: see parse.Options.
	RegexpOnly bool
	// NoGuards: see scenario.Options.
	NoGuards bool
	// GeoIP and GeoIPFor: see parse.Options.
	GeoIP    parse.GeoIP
	GeoIPFor func(sourceURLs []string) parse.GeoIP
	// TrustedProxies: see parse.Options.
	TrustedProxies parse.TrustedProxies
}

// Overflow is a scenario overflow after postoverflows, with the view hub
// expressions and asserts read (nil unless Config.Views).
type Overflow struct {
	Alerts []model.Alert
	View   *parse.OverflowEvent
	// reprocess: the overflow asks to be poured again (see again).
	reprocess bool
}

// Engine runs lines through parsers, scenarios and postoverflows. Not safe
// for concurrent use.
type Engine struct {
	env  *exprenv.Env
	pipe *parse.Pipeline
	post *parse.Pipeline
	set  *scenario.Set

	skipped []error
	// warnings are what the load tolerated besides the scenarios' own.
	warnings []error
	ctx      *alertctx.Contexts
	views    bool
	// parsedFields and metaFields size new events' maps (see learnSizes).
	parsedFields, metaFields int
	// free holds events no one holds any more, for Process to reuse, and
	// freeParsed the parsed fields of events buckets hold only for Meta.
	free       []*detect.Event
	freeParsed []map[string]string

	lines, parsed, unparsed, whitelisted, poured, alerts, postWhitelisted atomic.Uint64
	// reprocessed and reprocessDropped count the overflows poured again
	// and those the depth limit kept from it (see again).
	reprocessed, reprocessDropped atomic.Uint64
}

// New loads the selected hub content.
func New(cfg Config) (*Engine, error) {
	sel := cfg.Selection
	if sel == nil {
		h, err := hub.Open(cfg.HubDir, cfg.HubOverlays...)
		if err != nil {
			return nil, err
		}
		if sel, err = h.Select(cfg.Items); err != nil {
			return nil, err
		}
	}
	e := &Engine{env: exprenv.New(cfg.DataDir), views: cfg.Views, parsedFields: detect.DefaultParsedFields, metaFields: detect.DefaultMetaFields}
	if cfg.Selection == nil && len(cfg.Items) == 0 {
		// "Everything" leaves out what moat cannot run instead of failing.
		sel = e.dropUnsupported(sel)
	}
	opts := parse.Options{PatternDir: cfg.PatternDir, DataDir: cfg.DataDir, Env: e.env, Year: cfg.Year, LogTime: cfg.Replay, RegexpOnly: cfg.RegexpOnly, GeoIP: cfg.GeoIP, GeoIPFor: cfg.GeoIPFor, TrustedProxies: cfg.TrustedProxies}
	var err error
	if e.pipe, err = parse.Load(sel.Parsers, opts); err != nil {
		return nil, err
	}
	if len(sel.Postoverflows) > 0 {
		opts.Postoverflow = true
		if e.post, err = parse.Load(sel.Postoverflows, opts); err != nil {
			return nil, err
		}
	}
	ctx, err := alertctx.Load(sel.Contexts, e.env)
	if err != nil {
		return nil, err
	}
	for _, m := range sel.MissingContexts {
		e.warnings = append(e.warnings, fmt.Errorf("context %s: a collection names it, the hub does not hold it: its alerts go without it", m))
	}
	if e.set, err = scenario.Load(sel.Scenarios, scenario.Options{Env: e.env, MaxBuckets: cfg.MaxBuckets, Simulated: cfg.Simulated, Overrides: cfg.Overrides, Replay: cfg.Replay, Released: e.recycle, Context: ctx, NoGuards: cfg.NoGuards}); err != nil {
		return nil, err
	}
	e.ctx = ctx
	return e, nil
}

// unsupportedParsers address engines moat does not have (the AppSec WAF);
// an "everything" selection leaves them out rather than failing.
var unsupportedParsers = map[string]bool{"appsec-logs.yaml": true}

func (e *Engine) dropUnsupported(sel *hub.Selection) *hub.Selection {
	out := *sel
	out.Parsers = nil
	for _, p := range sel.Parsers {
		if unsupportedParsers[filepath.Base(p.Path)] {
			e.skipped = append(e.skipped, fmt.Errorf("parser %s: needs the AppSec engine", p.Path))
			continue
		}
		out.Parsers = append(out.Parsers, p)
	}
	out.Scenarios = nil
	for _, f := range sel.Scenarios {
		// Scenarios fed by overflows (evt.Overflow) are not supported.
		if _, err := scenario.Load([]string{f}, scenario.Options{Env: e.env}); err != nil {
			e.skipped = append(e.skipped, err)
			continue
		}
		out.Scenarios = append(out.Scenarios, f)
	}
	out.Contexts = nil
	for _, f := range sel.Contexts {
		// Contexts of the AppSec engine call its helpers (JA4H).
		if _, err := alertctx.Load([]string{f}, e.env); err != nil {
			e.skipped = append(e.skipped, err)
			continue
		}
		out.Contexts = append(out.Contexts, f)
	}
	return &out
}

// Skipped lists the items an "everything" selection left out, and why.
func (e *Engine) Skipped() []error { return append([]error(nil), e.skipped...) }

// Env is the expression environment shared by parsers and scenarios.
func (e *Engine) Env() *exprenv.Env { return e.env }

// Process parses one line, pours it into scenarios and returns the alerts
// of the overflows postoverflows let through.
func (e *Engine) Process(l detect.Line) []model.Alert {
	var evt *detect.Event
	if n := len(e.free); n > 0 {
		evt = e.free[n-1]
		e.free = e.free[:n-1]
		evt.Reuse(l)
		if evt.Parsed == nil {
			evt.Parsed = emptyParsed(&e.freeParsed, e.parsedFields)
		}
	}
	evt, ovs := e.process(l, nil, evt)
	if evt != nil {
		e.release(evt)
	}
	return alertsOf(ovs)
}

// ProcessTrace is Process recording parser node results in tr (may be
// nil) and returning the parsed event and whole overflows. The caller
// keeps the event: it is never reused.
func (e *Engine) ProcessTrace(l detect.Line, tr *parse.Trace) (*detect.Event, []Overflow) {
	return e.process(l, tr, nil)
}

// recycle keeps an event nothing holds any more for a later line. Most
// events a bucket keeps come back when the bucket overflows or drains:
// reusing them spares a replay nearly all of its allocations.
func (e *Engine) recycle(evt *detect.Event) {
	if len(e.free) < maxFree {
		e.free = append(e.free, evt)
	}
}

// release drops the engine's hold on evt: the event is recycled when no
// bucket keeps it, else its parsed fields are, when no bucket reads them.
func (e *Engine) release(evt *detect.Event) {
	if evt.Release() {
		e.recycle(evt)
	} else if p := evt.TakeParsed(); p != nil && len(e.freeParsed) < maxFree {
		e.freeParsed = append(e.freeParsed, p)
	}
}

// emptyParsed returns an empty map for an event's parsed fields: the last
// of free, cleared (TakeParsed leaves that to the core about to write it),
// or a new one sized for size fields.
func emptyParsed(free *[]map[string]string, size int) map[string]string {
	n := len(*free)
	if n == 0 {
		return make(map[string]string, size)
	}
	p := (*free)[n-1]
	(*free)[n-1] = nil
	*free = (*free)[:n-1]
	clear(p)
	return p
}

// maxFree bounds the events (and maps) kept for reuse; a flush that drops
// every bucket at once leaves the rest to the garbage collector.
const maxFree = 4096

// learnSizes keeps the largest numbers of parsed and meta fields an event
// of this engine got, so that new events' maps are sized for them.
func (e *Engine) learnSizes(evt *detect.Event) {
	e.parsedFields = min(max(e.parsedFields, len(evt.Parsed)), maxFieldsHint)
	e.metaFields = min(max(e.metaFields, len(evt.Meta)), maxFieldsHint)
}

// maxFieldsHint bounds what one odd line can make every later event
// allocate.
const maxFieldsHint = 64

// process runs l through the engine in evt, a reused event, or in a new
// one when evt is nil. The event comes back with one hold, the caller's.
func (e *Engine) process(l detect.Line, tr *parse.Trace, evt *detect.Event) (*detect.Event, []Overflow) {
	e.lines.Add(1)
	if !l.Process {
		if evt != nil {
			e.recycle(evt)
		}
		return nil, nil
	}
	if evt == nil {
		evt = detect.NewEventSized(l, e.parsedFields, e.metaFields)
		defer e.learnSizes(evt)
	}
	evt.Hold()
	if evt.Time.IsZero() {
		evt.Time = l.ReadAt
	}
	if !e.pipe.ParseTrace(evt, tr) {
		e.unparsed.Add(1)
		return evt, nil
	}
	e.parsed.Add(1)
	if evt.Whitelisted {
		e.whitelisted.Add(1)
		return evt, nil
	}
	e.poured.Add(1)
	return evt, e.postprocess(e.set.PourOverflows(evt))
}

// Tick runs time-driven overflows up to now (live mode).
func (e *Engine) Tick(now time.Time) []model.Alert {
	return alertsOf(e.postprocess(e.set.TickOverflows(now)))
}

// Flush ends a replay: counters emit what they counted, buckets are dropped.
func (e *Engine) Flush() []model.Alert {
	return alertsOf(e.FlushOverflows())
}

// FlushOverflows is Flush returning whole overflows. Overflows poured
// again (reprocess) may fill buckets after the flush: those end too, in as
// many rounds as an overflow may be poured again.
func (e *Engine) FlushOverflows() []Overflow {
	before := e.reprocessed.Load()
	out := e.postprocess(e.set.FlushOverflows())
	for range maxReprocessDepth {
		if e.reprocessed.Load() == before {
			break
		}
		before = e.reprocessed.Load()
		out = append(out, e.postprocess(e.set.FlushOverflows())...)
	}
	return out
}

func alertsOf(ovs []Overflow) []model.Alert {
	var out []model.Alert
	for _, o := range ovs {
		out = append(out, o.Alerts...)
	}
	return out
}

// postoverflow runs the postoverflows on ovs and drops the overflows they
// whitelist. An overflow to pour again gets its view, the event it becomes.
func (e *Engine) postoverflow(ovs []scenario.Overflow) []Overflow {
	if len(ovs) == 0 {
		return nil
	}
	out := make([]Overflow, 0, len(ovs))
	for _, o := range ovs {
		alerts := o.Alerts()
		// An overflow poured again needs its view only when a scenario
		// can take it back (see again).
		if e.post == nil && !e.views && !(o.Reprocess && e.set.TakesOverflows()) {
			e.alerts.Add(uint64(len(alerts)))
			out = append(out, Overflow{Alerts: alerts, reprocess: o.Reprocess})
			continue
		}
		v := View(o)
		if e.post != nil {
			e.post.ProcessOverflow(v, nil)
			if v.Overflow.Whitelisted || v.Whitelisted {
				e.postWhitelisted.Add(1)
				continue
			}
		}
		if src := v.Overflow.Alert.Source; src != nil && len(alerts) == 1 && (src.Scope != alerts[0].Scope || src.Value != alerts[0].Value) {
			// A postoverflow rewrote the source (ipv6_to_range); the
			// overflow's source entry follows, as in CrowdSec.
			if s, ok := v.Overflow.Sources[alerts[0].Value]; ok {
				s.Scope, s.Value = src.Scope, src.Value
				v.Overflow.Sources[alerts[0].Value] = s
			}
			setSource(&alerts[0], src.Scope, src.Value)
		}
		e.alerts.Add(uint64(len(alerts)))
		out = append(out, Overflow{Alerts: alerts, View: v, reprocess: o.Reprocess})
	}
	return out
}

// setSource applies a source a postoverflow rewrote (ipv6_to_range).
func setSource(a *model.Alert, scope, value string) {
	a.Scope, a.Value, a.Source = scope, value, netip.Prefix{}
	switch scope {
	case model.ScopeIP:
		if ip, err := netip.ParseAddr(value); err == nil {
			ip = ip.Unmap()
			a.Source = netip.PrefixFrom(ip, ip.BitLen())
		}
	case model.ScopeRange:
		if p, err := netip.ParsePrefix(value); err == nil {
			a.Source = p.Masked()
		}
	}
}

// View builds what postoverflows and hub asserts see of an overflow.
func View(o scenario.Overflow) *parse.OverflowEvent {
	a := o.Alert
	v := &parse.OverflowEvent{}
	ev := detect.NewEvent(detect.Line{})
	v.Event = *ev
	maps.Copy(v.Meta, a.Meta)
	v.Time = a.Stop
	av := &parse.AlertView{
		Scenario:        a.Scenario,
		ScenarioVersion: a.ScenarioVersion,
		ScenarioHash:    a.ScenarioHash,
		Message:         a.Message,
		EventsCount:     int32(a.EventsCount),
		Remediation:     a.Remediation,
		Simulated:       a.Simulated,
		StartAt:         a.Start.UTC().Format(time.RFC3339),
		StopAt:          a.Stop.UTC().Format(time.RFC3339),
		Labels:          a.Labels,
	}
	src := parse.Source{Scope: a.Scope, Value: a.Value}
	if a.Scope == model.ScopeIP {
		src.IP = a.Value
	} else if a.Scope == model.ScopeRange {
		src.Range = a.Value
	}
	if s, ok := o.Sources[a.Value]; ok {
		// The address's range (meta SourceRange), or a range's address,
		// as CrowdSec's alert source holds both: ban-defcon-drop_range
		// groups overflows poured again by Alert.Source.Range.
		src.IP, src.Range = s.IP, s.Range
	}
	av.Source = &src
	for _, m := range a.Events {
		av.Events = append(av.Events, &parse.EventView{Timestamp: m["timestamp"], Meta: m})
	}
	v.Overflow.Alert = av
	v.Overflow.Reprocess = o.Reprocess
	v.Overflow.Sources = make(map[string]parse.Source, len(o.Sources))
	for k, s := range o.Sources {
		v.Overflow.Sources[k] = parse.Source{Scope: s.Scope, Value: s.Value, IP: s.IP, Range: s.Range}
	}
	return v
}

// Stats are the engine's counters, for metrics.
type Stats struct {
	Lines, Parsed, Unparsed, Whitelisted, Poured, Alerts, PostWhitelisted uint64
	Parsers                                                               []parse.NodeStat
	Postoverflows                                                         []parse.NodeStat
	Scenarios                                                             scenario.Stats
	// EnricherUnavailable counts GeoIP/rDNS lookups skipped for lack of a
	// database or network.
	EnricherUnavailable uint64
	// ContextErrors counts alert context expressions that failed on an
	// event (and gave no value).
	ContextErrors uint64
	// Proxies counts the trusted-proxy rewrites of HTTP sources.
	Proxies     parse.ProxyStats
	MissingData []string
	// GrokPatterns counts the compiled grok patterns of parsers and
	// postoverflows, per tier that serves them first.
	GrokPatterns grok.TierCounts
	// Reprocessed counts the overflows of reprocess scenarios poured into
	// the scenarios again; ReprocessDropped those that were not, being
	// maxReprocessDepth overflows deep already (a scenario fed by its own
	// overflows, or a longer chain).
	Reprocessed, ReprocessDropped uint64
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Lines: e.lines.Load(), Parsed: e.parsed.Load(), Unparsed: e.unparsed.Load(),
		Whitelisted: e.whitelisted.Load(), Poured: e.poured.Load(), Alerts: e.alerts.Load(),
		PostWhitelisted:     e.postWhitelisted.Load(),
		Reprocessed:         e.reprocessed.Load(),
		ReprocessDropped:    e.reprocessDropped.Load(),
		Parsers:             e.pipe.Stats(),
		Scenarios:           e.set.Stats(),
		EnricherUnavailable: e.pipe.Unavailable(),
		ContextErrors:       e.ctx.Errors(),
		Proxies:             e.pipe.ProxyStats(),
		MissingData:         e.pipe.MissingData(),
	}
	s.GrokPatterns = e.pipe.GrokPatterns()
	if e.post != nil {
		s.Postoverflows = e.post.Stats()
		s.GrokPatterns.Add(e.post.GrokPatterns())
	}
	return s
}

// Degraded names the scenarios whose buckets are at their cap, new sources
// being counted approximately (see scenario.Set.Degraded).
func (e *Engine) Degraded() []string { return e.set.Degraded() }

// Explanation says what the engine did with one line.
type Explanation struct {
	Parsed      bool
	Whitelisted bool
	// Stages lists, per stage in order, each evaluated node and its outcome.
	Stages []StageExplanation
	// Event is the event after parsing.
	Event *detect.Event
	// Alerts are the overflows the line caused.
	Alerts []model.Alert
}

// StageExplanation is one stage of an explanation.
type StageExplanation struct {
	Stage string
	Nodes []NodeExplanation
}

// NodeExplanation is one node evaluation: whether it succeeded and what it
// changed in Parsed, Meta and Enriched.
type NodeExplanation struct {
	Parser  string
	Success bool
	Set     map[string]string // "Parsed.x", "Meta.y", "Enriched.z" -> value
	// Groks are the grok patterns that matched in the node.
	Groks []GrokExplanation `json:",omitempty"`
}

// GrokExplanation is a grok pattern that matched: the tier that serves it
// first and the tier that answered for this line (a later one when an
// earlier tier gave up on it).
type GrokExplanation struct {
	Pattern, Tier, Served string
}

// Explain processes the line like Process (buckets see it) and reports
// every node it went through.
func (e *Engine) Explain(l detect.Line) Explanation {
	l.Process = true
	var tr parse.Trace
	evt, ovs := e.ProcessTrace(l, &tr)
	x := Explanation{Event: evt, Alerts: alertsOf(ovs)}
	if evt != nil {
		x.Parsed, x.Whitelisted = evt.Process, evt.Whitelisted
	}
	prev := detect.NewEvent(l)
	for _, r := range tr.Results {
		if len(x.Stages) == 0 || x.Stages[len(x.Stages)-1].Stage != r.Stage {
			x.Stages = append(x.Stages, StageExplanation{Stage: r.Stage})
		}
		ne := NodeExplanation{Parser: r.Parser, Success: r.Success, Set: diff(prev, r.Evt)}
		for _, h := range r.Groks {
			ne.Groks = append(ne.Groks, GrokExplanation{Pattern: h.Pattern, Tier: h.Tier.String(), Served: h.Served.String()})
		}
		st := &x.Stages[len(x.Stages)-1]
		st.Nodes = append(st.Nodes, ne)
		prev = r.Evt
	}
	return x
}

func diff(a, b *detect.Event) map[string]string {
	out := map[string]string{}
	for _, m := range []struct {
		name string
		a, b map[string]string
	}{{"Parsed", a.Parsed, b.Parsed}, {"Meta", a.Meta, b.Meta}, {"Enriched", a.Enriched, b.Enriched}} {
		keys := make([]string, 0, len(m.b))
		for k := range m.b {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v, ok := m.a[k]; !ok || v != m.b[k] {
				out[m.name+"."+k] = m.b[k]
			}
		}
	}
	return out
}
