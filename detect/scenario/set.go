package scenario

import (
	"cmp"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/alertctx"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// DefaultMaxBuckets caps live buckets when Options.MaxBuckets is 0. Each
// scenario's bucket table gets an equal share of it, so a flood that fills
// one scenario's table leaves the others theirs. A bucket of an ssh-bf-like
// scenario holding one event costs about 0.8 KiB, so 100k buckets stay
// under 100 MiB while far exceeding what real traffic keeps alive.
const DefaultMaxBuckets = 100_000

// Options tune a Set.
type Options struct {
	// Env compiles and runs the expressions and holds the data files
	// scenarios name. Nil gives an Env without a data directory.
	Env *exprenv.Env
	// MaxBuckets caps live buckets (blackhole records included), shared
	// equally by the scenarios' tables (see table). 0 means
	// DefaultMaxBuckets.
	MaxBuckets int
	// Simulated names scenarios whose alerts are marked Simulated.
	Simulated []string
	// Overrides tune scenarios by name or glob (see Override); one that
	// matches no scenario is a warning.
	Overrides []Override
	// Released, when set, gets each event the last bucket holding it let
	// go, for the caller to reuse.
	Released func(*detect.Event)
	// Replay is a cold replay, where buckets run on log time. As in
	// CrowdSec's time machine, an event without evt.MarshaledTime (a parser
	// chain without dateparse-enrich) fills no bucket there, it only fires
	// triggers; it is counted as Untimed.
	Replay bool
	// Context, when set, is evaluated over each overflow's events into
	// its alert's Context.
	Context *alertctx.Contexts
	// NoGuards turns the filter guards off (see guard.go): the results
	// are the same, only slower; benchmarks and tests compare the two.
	NoGuards bool
}

// Set is a loaded group of scenarios and their live buckets. Its methods
// are safe for concurrent use; time only moves with the event times poured
// and the clock passed to Tick.
type Set struct {
	mu        sync.Mutex
	env       *exprenv.Env
	replay    bool
	scenarios []*scenario
	// reqKeys are the meta keys scenario requirements test (see
	// Matcher.candidates).
	reqKeys []string
	// own matches the events poured whole; crossEvent is set when a
	// filter or groupby uses a stash (see MatchesAnywhere).
	own        *Matcher
	matches    Matches
	crossEvent bool
	// takesOverflows is set when some scenario's requirements may hold
	// for an overflow poured again (see TakesOverflows).
	takesOverflows bool
	// guards decide the literal tests of many filters at once (nil: no
	// filter has one).
	guards *guards

	buckets   int // live buckets and blackhole records
	heap      bucketHeap
	max       int
	now       time.Time
	evictions uint64

	tables []*table
	// degraded counts tables using their sketch; checkAt is when advance
	// next looks whether they recovered.
	degraded int
	checkAt  time.Time
	rng      *rand.Rand
	seed     maphash.Seed
	// sketchLevels bounds the exact levels of each table's sketch.
	sketchLevels int

	warnings []error
	infos    []Info

	vars     exprenv.EvtVars
	cvars    map[string]any
	ovars    map[string]any
	outs     []Overflow
	memo     exprenv.Memo
	released func(*detect.Event)
	// ctx is evaluated into each overflow's alert (nil: no context).
	ctx *alertctx.Contexts
	// spareBuckets are removed buckets kept for new partitions.
	spareBuckets []*bucket
}

// Load reads scenario files (multi-document YAML, as in the hub) and
// compiles them. A file or scenario that cannot load fails the whole set:
// the error names the file and line.
func Load(files []string, opts Options) (*Set, error) {
	env := opts.Env
	if env == nil {
		env = exprenv.New("")
	}
	s := &Set{
		env:      env,
		max:      opts.MaxBuckets,
		replay:   opts.Replay,
		released: opts.Released,
		ctx:      opts.Context,
		vars:     exprenv.NewEvtVars((*detect.Event)(nil)),
		cvars:    map[string]any{"evt": (*detect.Event)(nil), "queue": (*Queue)(nil), "leaky": (*Leaky)(nil)},
		ovars:    map[string]any{"queue": (*Queue)(nil), "signal": (*model.Alert)(nil), "leaky": (*Leaky)(nil)},
		// Victim sampling need not be unpredictable, only cheap; a fixed
		// seed keeps replays reproducible.
		rng:          rand.New(rand.NewPCG(1, 2)),
		seed:         maphash.MakeSeed(),
		sketchLevels: defaultMaxLevels,
	}
	if s.max <= 0 {
		s.max = DefaultMaxBuckets
	}
	sim := map[string]bool{}
	for _, n := range opts.Simulated {
		sim[n] = true
	}
	ovs := newOverrides(opts.Overrides)
	for _, f := range files {
		specs, lines, docs, hash, err := readFile(f)
		if err != nil {
			return nil, err
		}
		for i, sp := range specs {
			eff := ovs.resolve(sp.Name)
			if eff.enabled != nil && !*eff.enabled {
				s.infos = append(s.infos, info(sp, f, lines[i], hubDoc{docs[i]}, eff, sim[sp.Name]))
				continue
			}
			sp = eff.apply(sp)
			sc, warns, err := compile(sp, env)
			if le, ok := eff.errAt(err, sp.Name); ok {
				return nil, le
			}
			if err != nil {
				return nil, &LoadError{File: f, Line: yamlerr.LineFor(docs[i], err, lines[i]), Name: sp.Name, Err: err}
			}
			for _, w := range warns {
				s.warnings = append(s.warnings, &LoadError{File: f, Line: yamlerr.LineFor(docs[i], w, lines[i]), Name: sp.Name, Err: w})
			}
			sc.idx = len(s.scenarios)
			// Scenarios with the same name and filter fill the same
			// buckets, as CrowdSec keys a bucket by name, filter and
			// groupby value: hub files that define a scenario twice
			// (once with distinct) count each event twice.
			for _, o := range s.scenarios {
				if o.spec.Name == sp.Name && o.spec.Filter == sp.Filter {
					sc.tab = o.tab
					break
				}
			}
			if sc.tab == nil {
				sc.tab = &table{buckets: map[string]*bucket{}}
				s.tables = append(s.tables, sc.tab)
			}
			sc.tab.users = append(sc.tab.users, sc)
			sc.file, sc.line, sc.hash = f, lines[i], hash
			sc.simulated = sim[sp.Name]
			in := info(sp, f, lines[i], hubDoc{docs[i]}, eff, sc.simulated)
			sc.simulated, sc.banDuration = in.Simulated, in.Duration
			s.infos = append(s.infos, in)
			sc.stats.Name = sp.Name
			s.scenarios = append(s.scenarios, sc)
			for _, r := range sc.reqs {
				if !slices.Contains(s.reqKeys, r.key) {
					s.reqKeys = append(s.reqKeys, r.key)
				}
			}
		}
	}
	s.warnings = append(s.warnings, ovs.unmatched()...)
	for _, t := range s.tables {
		t.cap = max(s.max/len(s.tables), 1)
		// A sketch bounds a leaky level; tables two scenarios share
		// (rare: a hub file defining one twice) only evict.
		if len(t.users) == 1 && t.users[0].kind == kindLeaky {
			t.sketchFor = t.users[0]
		}
	}
	for _, sc := range s.scenarios {
		s.crossEvent = s.crossEvent || usesStash(sc.spec.Filter) || usesStash(sc.spec.GroupBy)
		s.takesOverflows = s.takesOverflows || sc.mayTakeOverflow()
	}
	if !opts.NoGuards {
		s.guards = buildGuards(s.scenarios, env)
	}
	s.own = s.NewMatcher()
	return s, nil
}

// Warnings are the problems Load tolerated, as CrowdSec does: data files
// that could not be read.
func (s *Set) Warnings() []error { return s.warnings }

// Names lists the loaded scenarios in load order.
func (s *Set) Names() []string {
	out := make([]string, len(s.scenarios))
	for i, sc := range s.scenarios {
		out[i] = sc.spec.Name
	}
	return out
}

// Pour runs one event through every scenario and returns the alerts of the
// buckets that overflowed, one alert per source (an overflow of a bucket
// not grouped by source can name several).
func (s *Set) Pour(evt *detect.Event) []model.Alert {
	return alertsOf(s.PourOverflows(evt))
}

// PourOverflows is Pour returning whole overflows, with all their sources,
// as the hub test suite reads them.
func (s *Set) PourOverflows(evt *detect.Event) []Overflow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs = s.outs[:0]
	s.pour(evt)
	return s.takeOuts()
}

// Tick does the time-driven work up to now: counters whose duration ran
// out overflow, and ended buckets are dropped. Live mode calls it
// periodically; replays need not, Pour advances time by event time.
func (s *Set) Tick(now time.Time) []model.Alert {
	return alertsOf(s.TickOverflows(now))
}

// TickOverflows is Tick returning whole overflows.
func (s *Set) TickOverflows(now time.Time) []Overflow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs = s.outs[:0]
	s.advance(now)
	return s.takeOuts()
}

// Flush ends a replay: counters emit what they counted and every bucket is
// dropped. Other buckets end silently, as in CrowdSec.
func (s *Set) Flush() []model.Alert {
	return alertsOf(s.FlushOverflows())
}

// FlushOverflows is Flush returning whole overflows.
func (s *Set) FlushOverflows() []Overflow {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outs = s.outs[:0]
	live := make([]*bucket, 0, len(s.heap))
	live = append(live, s.heap...)
	slices.SortFunc(live, func(a, b *bucket) int {
		if c := cmp.Compare(a.sc.idx, b.sc.idx); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	for _, b := range live {
		if b.live && b.sc.kind == kindCounter {
			s.overflow(b, b.leaky.Last_ts, b.readAt)
		}
	}
	for _, b := range live {
		b.sc.stats.Buckets--
		b.queue.reset(s.drop)
	}
	for _, t := range s.tables {
		clear(t.buckets)
		clear(t.list)
		t.list = t.list[:0]
	}
	s.buckets = 0
	clear(s.heap)
	s.heap = s.heap[:0]
	return s.takeOuts()
}

// newBucket returns an empty bucket, a spare one when there is one: a
// replay starts and ends buckets by the hundred thousand.
func (s *Set) newBucket(sc *scenario, key string) *bucket {
	n := len(s.spareBuckets)
	if n == 0 {
		return &bucket{sc: sc, key: key, heapIdx: -1}
	}
	b := s.spareBuckets[n-1]
	s.spareBuckets = s.spareBuckets[:n-1]
	*b = bucket{sc: sc, key: key, heapIdx: -1, queue: Queue{Queue: b.queue.Queue[:0]}}
	return b
}

// maxSpareBuckets bounds the removed buckets kept for reuse.
const maxSpareBuckets = 1024

// drop releases an event a bucket let go.
func (s *Set) drop(e *detect.Event) {
	if e.Release() && s.released != nil {
		s.released(e)
	}
}

func (s *Set) takeOuts() []Overflow {
	if len(s.outs) == 0 {
		return nil
	}
	out := make([]Overflow, len(s.outs))
	copy(out, s.outs)
	clear(s.outs)
	return out
}

// eventTime is the time buckets reason on: the event's, else when its
// line was read.
func eventTime(evt *detect.Event) time.Time {
	if !evt.Time.IsZero() {
		return evt.Time
	}
	if !evt.Line.Time.IsZero() {
		return evt.Line.Time
	}
	return evt.Line.ReadAt
}

// byTupleMax bounds the candidate cache; meta values of the required keys
// (log types, statuses) take few values, so it rarely fills.
const byTupleMax = 4096

// candidates returns, in load order, the scenarios whose requirements the
// event's meta values meet.
func (sc *scenario) meets(evt *detect.Event) bool {
	for _, r := range sc.reqs {
		if !r.values[reqValue(evt, r.key)] {
			return false
		}
	}
	return true
}

func (s *Set) pour(evt *detect.Event) {
	s.own.Match(evt, &s.matches)
	s.fill(evt, &s.matches)
}

func (s *Set) pourInto(sc *scenario, key string, evt *detect.Event, t time.Time) {
	tab := sc.tab
	b := tab.buckets[key]
	if b != nil && b.live && t.After(b.liveDeadline()) {
		s.endLive(b)
	}
	var seed time.Duration
	if b == nil {
		if len(tab.buckets) >= tab.cap {
			var ok bool
			if seed, ok = s.makeRoom(tab, key, t); !ok {
				return
			}
		} else if tab.sk != nil {
			seed = s.unsketch(tab, key, t)
		}
		b = s.newBucket(sc, key)
		s.insert(tab, b)
	}
	// A bucket shared with another scenario behaves as the one that
	// made it.
	sc = b.sc
	if !b.live {
		b.begin(t)
		if seed > 0 {
			b.seed(seed)
		}
	}
	sc.stats.Pours++
	b.readAt = evt.Line.ReadAt

	if sc.kind == kindTrigger {
		b.leaky.Total_count = 1
		b.leaky.First_ts, b.leaky.Last_ts = t, t
		s.keep(b, evt)
		s.overflow(b, t, evt.Line.ReadAt)
		s.schedule(b)
		return
	}
	if sc.distinct != nil {
		v, err := s.runString(sc.distinct, evt)
		if err != nil {
			sc.stats.Errors++
		} else {
			if _, dup := b.seen[v]; dup {
				s.schedule(b)
				return
			}
			b.seen[v] = struct{}{}
		}
	}
	if sc.cancelOn != nil {
		if ok, err := s.runBool(sc.cancelOn, evt); err != nil {
			sc.stats.Errors++
		} else if ok {
			sc.stats.Canceled++
			b.end(s.drop)
			s.schedule(b)
			return
		}
	}

	b.leaky.Total_count++
	if b.leaky.First_ts.IsZero() {
		b.leaky.First_ts = t
	}
	b.leaky.Last_ts = t
	s.keep(b, evt)
	switch sc.kind {
	case kindLeaky:
		if !b.allow(t) {
			s.overflow(b, t, evt.Line.ReadAt)
		}
	case kindConditional:
		if s.runCond(sc.condition, b, evt) {
			s.overflow(b, b.leaky.Last_ts, evt.Line.ReadAt)
		}
	case kindBayesian:
		if s.bayesian(b, evt) {
			s.overflow(b, b.leaky.Last_ts, evt.Line.ReadAt)
		}
	}
	s.schedule(b)
}

// keep puts evt in b's queue. Holding the event rather than a lent copy
// of its meta lets the engine reuse its maps once the bucket lets go:
// lending the meta cost a map per poured event and 12% of a replay.
func (s *Set) keep(b *bucket, evt *detect.Event) {
	b.queue.add(evt, s.drop)
	if b.sc.readsQueue || s.ctx.NeedsParsed() {
		evt.NeedWhole()
	}
}

// runBool runs p natively when it can decide, else in the VM; a VM run
// may change the event (SetMeta), so it forgets the memoized folds.
func (s *Set) runBool(p *exprenv.Program, evt *detect.Event) (bool, error) {
	if v, ok := p.Bool(&s.memo, evt); ok {
		return v, nil
	}
	v, err := s.env.RunBool(p.VM, s.vars.Bind(evt))
	s.memo.Reset()
	return v, err
}

// runString is runBool for groupby and distinct values.
func (s *Set) runString(p *exprenv.Program, evt *detect.Event) (string, error) {
	if v, ok := p.String(&s.memo, evt); ok {
		return v, nil
	}
	out, err := s.env.Run(p.VM, s.vars.Bind(evt))
	s.memo.Reset()
	if err != nil {
		return "", err
	}
	return exprenv.ToString(out), nil
}
