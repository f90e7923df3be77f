package parse

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/grok"
	"github.com/moatsec/moat/detect/internal/litscan"
)

const (
	staticParsed = iota
	staticMeta
	staticEnriched
	staticTarget
	staticMethod
)

type static struct {
	kind  int
	key   string   // parsed/meta/enriched key, or method name
	path  []string // target path below evt
	value string
	expr  *vm.Program
	// get reads a plain field path (evt.Parsed.x) without the VM; most
	// hub statics are such paths.
	get    func(*detect.Event) string
	fast   *exprenv.Program
	method enricher
}

// fieldGetter returns a direct reader for expressions that only name an
// event field, or nil. It gives what the VM would: "" for a missing key.
func fieldGetter(src string) func(*detect.Event) string {
	src = strings.TrimSpace(src)
	rest, ok := strings.CutPrefix(src, "evt.")
	if !ok {
		return nil
	}
	ident := func(s string) bool {
		if s == "" {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
				return false
			}
		}
		return true
	}
	head, key, two := strings.Cut(rest, ".")
	if two {
		if !ident(key) {
			return nil
		}
		switch head {
		case "Parsed":
			return func(e *detect.Event) string { return e.Parsed[key] }
		case "Meta":
			return func(e *detect.Event) string { return e.Meta[key] }
		case "Enriched":
			return func(e *detect.Event) string { return e.Enriched[key] }
		case "Line":
			switch key {
			case "Raw":
				return func(e *detect.Event) string { return e.Line.Raw }
			case "Src":
				return func(e *detect.Event) string { return e.Line.Src }
			case "Module":
				return func(e *detect.Event) string { return e.Line.Module }
			}
		}
		return nil
	}
	switch head {
	case "StrTime":
		return func(e *detect.Event) string { return e.StrTime }
	case "MarshaledTime":
		return func(e *detect.Event) string { return e.MarshaledTime }
	}
	return nil
}

// lenGetter is fieldGetter for len(field) (the hub's http_args_len): the
// count of runes, as expr's len counts them in a string, in decimal.
func lenGetter(src string) func(*detect.Event) string {
	inner, ok := strings.CutPrefix(strings.TrimSpace(src), "len(")
	if !ok {
		return nil
	}
	if inner, ok = strings.CutSuffix(inner, ")"); !ok {
		return nil
	}
	get := fieldGetter(inner)
	if get == nil {
		return nil
	}
	return func(e *detect.Event) string { return strconv.Itoa(utf8.RuneCountInString(get(e))) }
}

type whitelist struct {
	reason string
	ips    []netip.Addr
	cidrs  []netip.Prefix
	exprs  []*vm.Program
}

func (w *whitelist) empty() bool {
	return w == nil || (len(w.ips) == 0 && len(w.cidrs) == 0 && len(w.exprs) == 0)
}

type stashEntry struct {
	name       string
	key, value *vm.Program
}

// node is a compiled parser node.
type node struct {
	name      string // parser name, inherited by children
	stage     string
	file      string
	onSuccess string
	filter    *vm.Program
	// fastFilter is filter with closures (not in postoverflows).
	fastFilter *exprenv.Program
	// filterGroup is the Pipeline.filterGroups entry of a filter that
	// is a pure function of one field, and filterSlot its verdict's
	// index there; filterGroup is -1 for other filters.
	filterGroup, filterSlot int

	grok        *grok.Pattern
	grokApply   string // "Line.Raw" or a Parsed key
	grokExpr    *vm.Program
	grokStatics []static

	statics  []static
	children []*node
	wl       *whitelist
	stash    []stashEntry

	// hits and ok total the counts of a top-level node over the pipeline
	// and its workers; a worker counts in its own slot (see
	// Pipeline.counts) and adds to them per batch, so workers never share
	// a cache line per event. slot is -1 for child nodes, which no one
	// reads counts of.
	hits, ok atomic.Uint64
	slot     int
	// pureMiss: when its grok fails the node writes nothing to the event
	// (no filter, whitelist, stash, children or hand-written matcher), so
	// a run of such siblings can share one read of their grok's input.
	pureMiss bool
	// runs are the runs of children one scan of their input rules out
	// together.
	runs []siblingRun
}

// siblingRun is a run of children, children[from:to], each a pureMiss
// node with a grok on the same input: one scan of the input for their
// patterns' literals tells which of them cannot match, and those are not
// tried. Skipping one is failing as it would have: its miss writes
// nothing.
type siblingRun struct {
	from, to int
	scan     *litscan.Pairs
}

// minSiblingRun is the shortest run worth a scan: for fewer children,
// looking for each one's literals in turn costs less.
const minSiblingRun = 8

// siblingRuns finds the runs of children worth a scan.
func siblingRuns(children []*node) []siblingRun {
	var runs []siblingRun
	for i := 0; i < len(children); {
		j := i
		var required [][]string
		for j < len(children) && len(required) < litscan.MaxPairs {
			c := children[j]
			if !c.pureMiss || c.grokApply != children[i].grokApply {
				break
			}
			lits := c.grok.Literals()
			if len(lits) == 0 {
				break
			}
			required = append(required, lits)
			j++
		}
		if j-i >= minSiblingRun {
			if scan := litscan.NewPairs(required); scan != nil {
				runs = append(runs, siblingRun{from: i, to: j, scan: scan})
			}
		}
		i = max(j, i+1)
	}
	return runs
}

// run is the state of one event going through the pipeline.
type run struct {
	p    *Pipeline
	evt  *detect.Event
	root any // *detect.Event or *OverflowEvent: what expressions see as evt
	vars *exprenv.EvtVars
	// ov is the overflow postoverflows run on, nil for log events.
	ov *OverflowEvent
	// input is the last grok input a pureMiss node read, valid while only
	// such nodes failed since.
	input fieldRead
	// text is the last grok input, with what patterns learnt of it.
	text grok.Text
	// tracing collects the groks that matched in hits.
	tracing bool
	hits    []GrokHit
}

// vmVars returns the variables for a VM run on the event (see
// exprenv.EvtVars).
func (r *run) vmVars() map[string]any { return r.vars.Bind(r.root) }

type fieldRead struct {
	key, val  string
	ok, valid bool
}

// grokInput reads the parsed field n's grok applies to.
func (r *run) grokInput(n *node) (string, bool) {
	if in := &r.input; in.valid && in.key == n.grokApply {
		return in.val, in.ok
	}
	v, ok := r.evt.Parsed[n.grokApply]
	if n.pureMiss {
		r.input = fieldRead{key: n.grokApply, val: v, ok: ok, valid: true}
	}
	return v, ok
}

// sources returns the IPs whitelists check: the event's source_ip, or an
// overflow's source IPs.
func (r *run) sources() []string {
	if r.ov == nil {
		if ip, ok := r.evt.Meta["source_ip"]; ok {
			return []string{ip}
		}
		return nil
	}
	out := make([]string, 0, len(r.ov.Overflow.Sources))
	for _, s := range r.ov.Overflow.Sources {
		if s.IP != "" {
			out = append(out, s.IP)
		}
	}
	return out
}

// filterOK runs a node's filter, or takes its verdict from those kept
// for the value of the one field it reads.
func (r *run) filterOK(n *node) bool {
	if n.filterGroup < 0 || r.ov != nil {
		return r.runFilter(n)
	}
	vs := r.p.verdicts[n.filterGroup].verdicts(r.evt)
	switch vs[n.filterSlot] {
	case verdictTrue:
		return true
	case verdictFalse:
		return false
	}
	ok := r.runFilter(n)
	vs[n.filterSlot] = verdictFalse
	if ok {
		vs[n.filterSlot] = verdictTrue
	}
	return ok
}

// runFilter evaluates a node's filter, natively when the closures decide.
// The event changes from node to node, so folds are not kept between them.
func (r *run) runFilter(n *node) bool {
	if n.fastFilter != nil {
		r.p.memo.Reset()
		if v, ok := n.fastFilter.Bool(&r.p.memo, r.evt); ok {
			return v
		}
	}
	return r.evalBool(n.filter)
}

func (r *run) evalBool(p *vm.Program) bool {
	ok, err := r.p.env.RunBool(p, r.vmVars())
	return err == nil && ok
}

// process runs the node on the event, as CrowdSec's node.process does.
func (n *node) process(r *run) (bool, error) {
	evt := r.evt
	state := true
	if n.filter != nil && !r.filterOK(n) {
		return false, nil
	}
	r.p.count(n, true)

	whitelisted := false
	if !n.wl.empty() {
		var err error
		whitelisted, err = n.checkWhitelist(r)
		if err != nil {
			return false, nil
		}
		if whitelisted && !evt.Whitelisted {
			evt.Whitelisted = true
			evt.WhitelistReason = n.wl.reason
			if o, ok := r.root.(*OverflowEvent); ok {
				o.Overflow.Whitelisted = true
			}
		}
	}

	grokOK := false
	if n.grok != nil {
		var in string
		switch {
		case n.grokApply == "Line.Raw":
			in = evt.Line.Raw
		case n.grokApply != "":
			v, ok := r.grokInput(n)
			if !ok {
				state = false
			}
			in = v
		case n.grokExpr != nil:
			out, err := r.p.env.Run(n.grokExpr, r.vmVars())
			if err != nil {
				state = false
			}
			switch v := out.(type) {
			case string:
				in = v
			case int:
				in = strconv.Itoa(v)
			case float64:
				in = strconv.FormatFloat(v, 'f', 6, 64)
			}
		}
		r.text.Set(in)
		matched, tier := n.grok.MatchText(&r.text, evt.Parsed)
		if matched && r.tracing {
			r.hits = append(r.hits, GrokHit{Pattern: n.grok.String(), Tier: n.grok.Tier(), Served: tier})
		}
		if matched {
			grokOK = true
			if err := n.applyStatics(r, n.grokStatics); err != nil {
				return false, err
			}
		} else {
			state = false
		}
	}

	if grokOK || n.grok == nil {
		for _, s := range n.stash {
			v, err := r.p.env.Run(s.value, r.vmVars())
			vs, ok := v.(string)
			if err != nil || !ok {
				continue
			}
			k, err := r.p.env.Run(s.key, r.vmVars())
			ks, ok := k.(string)
			if err != nil || !ok {
				continue
			}
			r.p.env.SetInStash(s.name, ks, vs, evt.Time)
		}
	}

	sharing := false
	runs := n.runs
	var may uint64
	for i, c := range n.children {
		if !sharing {
			r.input.valid = false
		}
		if len(runs) > 0 && i >= runs[0].from {
			run := runs[0]
			if i == run.from {
				may = ^uint64(0)
				if in, ok := r.grokInput(c); ok {
					may = run.scan.Find(in)
				}
			}
			if i+1 == run.to {
				runs = runs[1:]
			}
			if may&(1<<(i-run.from)) == 0 {
				sharing = true
				if !grokOK {
					state = false
				}
				continue
			}
		}
		ok, err := c.process(r)
		if err != nil {
			return false, err
		}
		sharing = c.pureMiss && !ok
		if ok {
			state = true
			if n.onSuccess == "next_stage" {
				break
			}
		} else if !grokOK {
			// A node without a successful grok of its own succeeds only
			// through its children (CrowdSec keeps the last child's verdict).
			state = false
		}
	}

	if !state {
		return false, nil
	}
	r.p.count(n, false)
	if len(n.statics) > 0 && (whitelisted || n.wl.empty()) {
		if err := n.applyStatics(r, n.statics); err != nil {
			return false, err
		}
	}
	if n.onSuccess == "next_stage" {
		if i := r.p.stageIndex(evt.Stage); i >= 0 && i+1 < len(r.p.stages) {
			evt.Stage = r.p.stages[i+1]
		}
	}
	return true, nil
}

func (n *node) checkWhitelist(r *run) (bool, error) {
	if len(n.wl.ips) > 0 || len(n.wl.cidrs) > 0 {
		for _, s := range r.sources() {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			a = a.Unmap()
			for _, ip := range n.wl.ips {
				if ip == a {
					return true, nil
				}
			}
			for _, c := range n.wl.cidrs {
				if c.Contains(a) {
					return true, nil
				}
			}
		}
	}
	for _, e := range n.wl.exprs {
		ok, err := r.p.env.RunBool(e, r.vmVars())
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func (n *node) applyStatics(r *run, statics []static) error {
	evt := r.evt
	for i := range statics {
		s := &statics[i]
		value := s.value
		done := false
		if s.fast != nil {
			r.p.memo.Reset()
			if v, ok := s.fast.String(&r.p.memo, evt); ok {
				value, done = v, true
			}
		}
		switch {
		case done:
		case s.get != nil:
			value = s.get(evt)
		case s.expr != nil:
			out, err := r.p.env.Run(s.expr, r.vmVars())
			if err != nil {
				continue
			}
			switch v := out.(type) {
			case string:
				value = v
			case int:
				value = strconv.Itoa(v)
			case int64:
				value = strconv.FormatInt(v, 10)
			case float64:
				value = strconv.FormatFloat(v, 'f', 6, 64)
			case bool:
				value = strconv.FormatBool(v)
			case nil, map[string]any, []any:
				continue
			default:
				return fmt.Errorf("%s: static expression returned %T", n.name, out)
			}
		}
		if value == "" && s.kind != staticMethod {
			continue
		}
		switch s.kind {
		case staticMethod:
			if s.method == nil {
				continue
			}
			if value == "" && s.key != "ParseDate" {
				continue
			}
			s.method(r, value)
		case staticParsed:
			evt.Parsed[s.key] = value
		case staticMeta:
			evt.Meta[s.key] = value
		case staticEnriched:
			evt.Enriched[s.key] = value
		case staticTarget:
			setTarget(r, s.path, value)
		}
	}
	return nil
}

// setTarget sets evt.<path> = value, with fast paths for the fields hub
// files address and reflection for the rest.
func setTarget(r *run, path []string, value string) bool {
	evt := r.evt
	if len(path) == 1 {
		switch path[0] {
		case "StrTime":
			evt.StrTime = value
			return true
		case "StrTimeFormat":
			evt.StrTimeFormat = value
			return true
		case "MarshaledTime":
			evt.MarshaledTime = value
			return true
		}
	}
	if len(path) == 2 {
		switch path[0] {
		case "Parsed":
			evt.Parsed[path[1]] = value
			return true
		case "Meta":
			evt.Meta[path[1]] = value
			return true
		case "Enriched":
			evt.Enriched[path[1]] = value
			return true
		}
	}
	v := reflect.ValueOf(r.root)
	for i, p := range path {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return false
			}
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			v = v.FieldByName(p)
			if !v.IsValid() {
				return false
			}
		case reflect.Map:
			if i != len(path)-1 || v.Type().Key().Kind() != reflect.String {
				return false
			}
			ev := reflect.ValueOf(value)
			if !ev.Type().AssignableTo(v.Type().Elem()) {
				return false
			}
			v.SetMapIndex(reflect.ValueOf(p), ev)
			return true
		default:
			return false
		}
	}
	if v.Kind() == reflect.String && v.CanSet() {
		v.SetString(value)
		return true
	}
	return false
}

// parseTargetPath turns "evt.StrTime" or "StrTime" into its path.
func parseTargetPath(t string) []string {
	t = strings.TrimPrefix(t, "evt.")
	return strings.Split(t, ".")
}

// parseDuration accepts Go durations and bare seconds.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return time.Duration(n) * time.Second, nil
}
