package scenario

import (
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/internal/model"
)

// Source is one source of an overflow, as CrowdSec's Overflow.Sources
// holds it.
type Source struct {
	Scope string
	Value string
	IP    string
	Range string
}

// GetScope and GetValue mirror CrowdSec's accessors for hub asserts.
func (s Source) GetScope() string { return s.Scope }
func (s Source) GetValue() string { return s.Value }

// Overflow is one bucket overflow: the alert for its first source (sorted
// by value) and every source it names.
type Overflow struct {
	Alert   model.Alert
	Sources map[string]Source
	// Reprocess is set when the scenario has reprocess: true: the caller
	// pours the overflow into the scenarios again (see detect.Overflow).
	Reprocess bool
}

// Alerts gives one alert per source, sorted by value, so every source of
// the overflow can become a decision.
func (o Overflow) Alerts() []model.Alert {
	if len(o.Sources) <= 1 {
		return []model.Alert{o.Alert}
	}
	out := make([]model.Alert, 0, len(o.Sources))
	for _, v := range slices.Sorted(maps.Keys(o.Sources)) {
		a := o.Alert
		setSource(&a, o.Sources[v])
		out = append(out, a)
	}
	return out
}

func alertsOf(ovs []Overflow) []model.Alert {
	if len(ovs) == 0 {
		return nil
	}
	out := make([]model.Alert, 0, len(ovs))
	for _, o := range ovs {
		out = append(out, o.Alerts()...)
	}
	return out
}

func setSource(a *model.Alert, src Source) {
	a.Scope = src.Scope
	a.Value = src.Value
	a.Source = netip.Prefix{}
	switch src.Scope {
	case model.ScopeIP:
		if ip, err := netip.ParseAddr(src.Value); err == nil {
			ip = ip.Unmap()
			a.Source = netip.PrefixFrom(ip, ip.BitLen())
		}
	case model.ScopeRange:
		if p, err := netip.ParsePrefix(src.Value); err == nil {
			a.Source = p.Masked()
		}
	}
}

func (s *Set) runCond(p *vm.Program, b *bucket, evt *detect.Event) bool {
	s.cvars["evt"], s.cvars["queue"], s.cvars["leaky"] = evt, &b.queue, &b.leaky
	ok, err := s.env.RunBool(p, s.cvars)
	if err != nil {
		b.sc.stats.Errors++
		return false
	}
	return ok
}

// bayesian recomputes the posterior from the prior over every condition,
// as CrowdSec does after each pour; a fired guillotine condition counts as
// true without running again.
func (s *Set) bayesian(b *bucket, evt *detect.Event) bool {
	post := b.sc.spec.BayesianPrior
	for i, c := range b.sc.bayes {
		if c.guillotine && b.guill[i] {
			post = bayesUpdate(post, c.evil, c.benign)
			continue
		}
		if s.runCond(c.prog, b, evt) {
			post = bayesUpdate(post, c.evil, c.benign)
			b.guill[i] = true
		} else {
			post = bayesUpdate(post, 1-c.evil, 1-c.benign)
		}
	}
	return post > b.sc.spec.BayesianThreshold
}

func bayesUpdate(prior, evil, benign float32) float32 {
	num := evil * prior
	return num / (num + benign*(1-prior))
}

// overflow turns the bucket's content into an overflow, unless the
// overflow filter or the blackhole discards it, and empties the bucket.
func (s *Set) overflow(b *bucket, at time.Time, readAt time.Time) {
	sc := b.sc
	b.leaky.Ovflw_ts = at
	defer b.end(s.drop)
	if sc.overflowFilter == nil && sc.blackhole > 0 && b.blackholeUntil.After(at) {
		// Nothing reads an overflow the blackhole swallows: most of a
		// steady attacker's overflows are, and building each was most of
		// what pouring cost.
		sc.stats.Blackholed++
		return
	}
	o, err := s.newOverflow(b, at, readAt)
	if err != nil {
		sc.stats.Errors++
		return
	}
	if sc.overflowFilter != nil {
		s.ovars["queue"], s.ovars["signal"], s.ovars["leaky"] = &b.queue, &o.Alert, &b.leaky
		ok, err := s.env.RunBool(sc.overflowFilter, s.ovars)
		if err != nil || !ok {
			if err != nil {
				sc.stats.Errors++
			}
			sc.stats.Filtered++
			return
		}
	}
	if sc.blackhole > 0 {
		if b.blackholeUntil.After(at) {
			sc.stats.Blackholed++
			return
		}
		b.blackholeUntil = at.Add(sc.blackhole)
	}
	sc.stats.Overflows++
	s.outs = append(s.outs, o)
}

func (s *Set) newOverflow(b *bucket, at, readAt time.Time) (Overflow, error) {
	sc := b.sc
	sources := make(map[string]Source, 1)
	// A bucket's events nearly always come from one source (buckets group
	// by it): with a plain Ip or Range scope, an event with the same
	// source fields as the one before has the same source.
	plain := sc.scopeExpr == nil && (sc.scope == model.ScopeIP || sc.scope == model.ScopeRange)
	var lastIP, lastRange string
	var err error
	each := func(i int, m map[string]string, e *detect.Event) {
		if err != nil {
			return
		}
		if plain {
			ip, rg := m["source_ip"], m["SourceRange"]
			if i > 0 && ip == lastIP && rg == lastRange {
				return
			}
			lastIP, lastRange = ip, rg
		}
		var src Source
		if e != nil {
			src, err = s.sourceOf(sc, e)
		} else {
			src, err = sourceOfMeta(sc, m)
		}
		if err != nil {
			err = fmt.Errorf("scenario %s: %w", sc.spec.Name, err)
			return
		}
		if src.Value != "" {
			sources[src.Value] = src
		}
	}
	for i, e := range b.queue.Queue {
		if e.Overflow.Alert != nil {
			if err == nil {
				err = s.overflowSources(sc, e, sources)
			}
			continue
		}
		each(i, e.Meta, e)
	}
	if err != nil {
		return Overflow{}, err
	}
	var first Source
	sourceStr := ""
	switch len(sources) {
	case 0:
		return Overflow{}, fmt.Errorf("scenario %s: overflow without source", sc.spec.Name)
	case 1:
		for v, src := range sources {
			first, sourceStr = src, v
		}
	default:
		keys := slices.Sorted(maps.Keys(sources))
		first = sources[keys[0]]
		sourceStr = fmt.Sprintf("%d sources", len(keys))
	}
	a := model.Alert{
		Scenario:        sc.spec.Name,
		ScenarioVersion: sc.spec.Version,
		ScenarioHash:    sc.hash,
		// Round(0): live times carry the monotonic clock, which String
		// would print as "m=+6.41" to every reader of the message.
		Message: fmt.Sprintf("%s %s performed '%s' (%d events over %s) at %s",
			sc.scope, sourceStr, sc.spec.Name, b.leaky.Total_count, at.Sub(b.leaky.First_ts), b.leaky.Last_ts.Round(0)),
		Start:       b.leaky.First_ts,
		Stop:        at,
		EventsCount: b.leaky.Total_count,
		Events:      make([]map[string]string, 0, len(b.queue.Queue)),
		Labels:      maps.Clone(sc.labels),
		Remediation: sc.remediate,
		Simulated:   sc.simulated,
		Duration:    sc.banDuration,
		ReadAt:      readAt,
		Context:     s.ctx.Eval(b.queue.Queue),
	}
	// The alert shares the events' meta maps: an event in a bucket is never
	// written again, and alerts are only read.
	for _, e := range b.queue.Queue {
		if e.Meta != nil {
			a.Events = append(a.Events, e.LendMeta())
		}
	}
	// Merged meta: the last event's values win, as if each event's meta
	// were copied over the previous ones.
	if n := len(a.Events); n > 0 {
		a.Meta = maps.Clone(a.Events[n-1])
		for i := n - 2; i >= 0; i-- {
			for k, v := range a.Events[i] {
				if _, ok := a.Meta[k]; !ok {
					a.Meta[k] = v
				}
			}
		}
	} else {
		a.Meta = map[string]string{}
	}
	setSource(&a, first)
	return Overflow{Alert: a, Sources: sources, Reprocess: sc.spec.Reprocess}, nil
}

// overflowSources adds the sources an overflow poured again brings to a
// bucket of sc, as CrowdSec takes them: the overflow's own sources when
// their scope is sc's; for a Range scenario, the range of each Ip source
// (or what the scope expression makes of the event); none otherwise.
func (s *Set) overflowSources(sc *scenario, e *detect.Event, into map[string]Source) error {
	for k, v := range e.Overflow.Sources {
		if v.Scope == sc.scope {
			into[k] = Source{Scope: v.Scope, Value: v.Value, IP: v.IP, Range: v.Range}
			continue
		}
		if sc.scope != model.ScopeRange || v.Scope != model.ScopeIP {
			continue
		}
		src := Source{Scope: sc.scope, Value: v.Range, IP: v.IP, Range: v.Range}
		if sc.scopeExpr != nil {
			out, err := s.runScope(sc, e)
			if err != nil {
				return fmt.Errorf("scenario %s: scope expression: %w", sc.spec.Name, err)
			}
			src.Value, _ = out.(string)
		}
		if src.Value != "" {
			into[src.Value] = src
		}
	}
	return nil
}

var errNoSourceIP = errors.New("no valid meta source_ip")

// sourceOfMeta is sourceOf for the Ip and Range scopes, which read meta
// only.
func sourceOfMeta(sc *scenario, m map[string]string) (Source, error) {
	src := Source{Scope: sc.scope}
	switch sc.scope {
	case model.ScopeIP, model.ScopeRange:
		ip, err := netip.ParseAddr(m["source_ip"])
		if err != nil {
			return src, errNoSourceIP
		}
		src.IP = m["source_ip"]
		if r := m["SourceRange"]; r != "" {
			p, err := netip.ParsePrefix(r)
			if err != nil {
				return src, fmt.Errorf("bad SourceRange %q of %s", r, ip)
			}
			src.Range = p.Masked().String()
		}
		if sc.scope == model.ScopeIP {
			src.Value = src.IP
			return src, nil
		}
		src.Value = src.Range
	}
	return src, nil
}

// sourceOf finds an event's source for the scenario's scope, as CrowdSec:
// Ip and Range read meta source_ip (and SourceRange), other scopes run the
// scope expression.
func (s *Set) sourceOf(sc *scenario, e *detect.Event) (Source, error) {
	src, err := sourceOfMeta(sc, e.Meta)
	if err != nil || sc.scopeExpr == nil || sc.scope == model.ScopeIP {
		return src, err
	}
	out, err := s.runScope(sc, e)
	if err != nil {
		return src, fmt.Errorf("scope expression: %w", err)
	}
	src.Value = exprenv.ToString(out)
	return src, nil
}

// runScope runs sc's scope expression over e, one of the events a bucket
// holds. Every VM run binds its own event: e need not give way to the one
// being poured afterwards.
func (s *Set) runScope(sc *scenario, e *detect.Event) (any, error) {
	defer s.vars.Unbind()
	return s.env.Run(sc.scopeExpr, s.vars.Bind(e))
}

// schedule puts a bucket on the timer at its next deadline, or drops it
// when nothing about it is left to remember.
func (s *Set) schedule(b *bucket) {
	var d time.Time
	if b.live {
		d = b.liveDeadline()
	} else if b.blackholeUntil.After(s.now) {
		d = b.blackholeUntil
	} else {
		s.remove(b)
		return
	}
	b.deadline = d
	if b.heapIdx < 0 {
		heap.Push(&s.heap, b)
	} else {
		heap.Fix(&s.heap, b.heapIdx)
	}
}

func (s *Set) remove(b *bucket) {
	if b.heapIdx >= 0 {
		heap.Remove(&s.heap, b.heapIdx)
	}
	if tab := b.sc.tab; tab.buckets[b.key] == b {
		delete(tab.buckets, b.key)
		last := tab.list[len(tab.list)-1]
		tab.list[b.tabIdx], last.tabIdx = last, b.tabIdx
		tab.list[len(tab.list)-1] = nil
		tab.list = tab.list[:len(tab.list)-1]
		s.buckets--
		b.sc.stats.Buckets--
		// A removed bucket holds no events: evict ends it first, and
		// schedule removes only ended ones.
		if len(s.spareBuckets) < maxSpareBuckets {
			s.spareBuckets = append(s.spareBuckets, b)
		}
	}
}

// endLive ends a live bucket at its deadline: counters overflow, the rest
// underflow.
func (s *Set) endLive(b *bucket) {
	if b.sc.kind == kindCounter {
		s.overflow(b, b.liveDeadline(), b.readAt)
		return
	}
	b.sc.stats.Underflows++
	b.end(s.drop)
}

// advance moves the set's clock to now and ends what is due.
func (s *Set) advance(now time.Time) {
	if !now.After(s.now) {
		return
	}
	s.now = now
	for len(s.heap) > 0 && s.heap[0].deadline.Before(now) {
		b := s.heap[0]
		if b.live {
			s.endLive(b)
		}
		s.schedule(b)
	}
	s.recoverCheck(now)
}

// ScenarioStats are one scenario's counters.
type ScenarioStats struct {
	Name       string
	Pours      uint64 // events poured into a bucket (filter matched)
	Untimed    uint64 // replayed events with no time of their own, not poured
	Overflows  uint64 // overflows emitted
	Blackholed uint64 // overflows hidden by the blackhole
	Filtered   uint64 // overflows dropped by overflow_filter
	Canceled   uint64 // buckets killed by cancel_on
	Underflows uint64 // buckets that emptied and ended
	Evictions  uint64 // buckets dropped at the cap of the scenario's table
	Errors     uint64 // expression or source errors
	Buckets    int    // buckets alive now

	// The scenario's bucket table (shared by scenarios of one name and
	// filter): its cap, whether it is degraded (full, with partitions
	// counted by its sketch only), how often it became so and recovered,
	// the events only the sketch counted, the partitions the sketch
	// promoted to a bucket, and the partitions whose exact level the
	// sketch dropped for lack of room.
	MaxBuckets   int
	Degraded     bool
	Degradations uint64
	Recoveries   uint64
	SketchPours  uint64
	Promotions   uint64
	SketchLost   uint64
}

// Stats are the set's counters.
type Stats struct {
	Scenarios []ScenarioStats
	Buckets   int
	Evictions uint64
}

// Stats returns a snapshot of the counters.
func (s *Set) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Buckets: s.buckets, Evictions: s.evictions}
	st.Scenarios = make([]ScenarioStats, len(s.scenarios))
	for i, sc := range s.scenarios {
		st.Scenarios[i] = sc.stats
		t := sc.tab
		ss := &st.Scenarios[i]
		ss.MaxBuckets, ss.Degraded, ss.Degradations, ss.Recoveries = t.cap, t.degraded, t.degradations, t.recoveries
		ss.SketchPours, ss.Promotions, ss.SketchLost = t.sketchPours, t.promotions, t.sketchLost()
	}
	return st
}
