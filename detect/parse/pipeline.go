// Package parse runs CrowdSec-hub parser nodes over events: stages of node
// trees with expr filters, grok patterns, statics, whitelists, stashes and
// enrichers. Hub parser files load unchanged.
package parse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/yamlerr"

	"github.com/expr-lang/expr/vm"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/grok"
)

// File is one parser file and the stage it belongs to ("s01-parse").
type File struct {
	Path  string
	Stage string
}

// Options configure a pipeline.
type Options struct {
	PatternDir string
	DataDir    string
	// Env runs expressions; a new one over DataDir when nil. Share one Env
	// between parsers and scenarios so the stash and data files are common.
	Env *exprenv.Env
	// Year is given to dates without one (syslog); 0 means the year of the
	// event's read time, or the current year.
	Year int
	// LogTime makes parsed log dates the event time (cold replay); when
	// false the time the source gave is kept (live).
	LogTime bool
	// Postoverflow compiles expressions against OverflowEvent.
	Postoverflow bool
	// RegexpOnly leaves out the grok.Backtrack tier: groks the
	// hand-written fast paths do not answer run on Go's regexp, what the
	// backtracker's gain is measured against.
	RegexpOnly bool
	// GeoIP answers the GeoIpCity, GeoIpASN and IpToRange enrichers; nil
	// leaves them unavailable (counted, the event flows on).
	GeoIP GeoIP
	// GeoIPFor, when set, picks a node's databases from the source URLs
	// of its own data entries (an offline mirror, as the hub's test runner
	// downloads each parser's files); nil falls back to GeoIP.
	GeoIPFor func(sourceURLs []string) GeoIP
	// TrustedProxies, when it names proxies, sets the source of an HTTP
	// access-log event from its forwarded-client header when the logged
	// peer is one of them. It runs after the stage that set the source
	// (s01-parse for the hub's HTTP parsers), so enrichers and
	// whitelists of later stages see the client. Log pipelines only.
	TrustedProxies TrustedProxies
}

// Pipeline is a loaded set of parser stages.
type Pipeline struct {
	env    *exprenv.Env
	opts   Options
	stages []string
	nodes  [][]*node // per stage, in file order
	grok   *grok.Library
	vars   exprenv.EvtVars
	memo   exprenv.Memo
	run    run // the state of the event being parsed, reused
	// lastDate spares dateparse the lines that repeat the timestamp before.
	lastDate dateMemo

	// unavailable is shared with the pipeline's workers (see Worker).
	unavailable *atomic.Uint64
	missing     []string
	// crossEvent is set when a node keeps state from one event to the
	// next (a stash, a line's shared labels), which parallel parsing
	// would reorder.
	crossEvent bool
	// proxy is the trusted-proxy rewrite, nil when off.
	proxy *proxyRule

	// top are the top-level nodes, by slot. A worker (batched) counts
	// their hits in counts until FlushCounts; others add to the totals.
	top     []*node
	counts  []nodeCount
	batched bool

	// filterGroups are the filters whose verdicts are kept by the value
	// of the one field they read; verdicts is this pipeline's cache of
	// them (see verdicts.go).
	filterGroups []filterGroup
	verdicts     []verdictCache
}

type nodeCount struct{ hits, ok uint64 }

// ErrUnknownField is wrapped by errors for keys a parser file must not have.
var ErrUnknownField = errors.New("unknown field")

// Load reads and compiles parser files. Files of a stage run in the order
// of their base names; the documents of a file in file order.
func Load(files []File, opts Options) (*Pipeline, error) {
	p := &Pipeline{env: opts.Env, opts: opts, grok: grok.New(grok.Options{NoBacktrack: opts.RegexpOnly}), unavailable: new(atomic.Uint64)}
	if p.env == nil {
		p.env = exprenv.New(opts.DataDir)
	}
	if err := p.grok.LoadDir(opts.PatternDir); err != nil {
		return nil, err
	}
	if !opts.Postoverflow {
		var err error
		if p.proxy, err = newProxyRule(opts.TrustedProxies); err != nil {
			return nil, err
		}
	}
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Stage != sorted[j].Stage {
			return sorted[i].Stage < sorted[j].Stage
		}
		return filepath.Base(sorted[i].Path) < filepath.Base(sorted[j].Path)
	})
	for _, f := range sorted {
		if f.Stage == "" {
			return nil, fmt.Errorf("load parser %s: no stage", f.Path)
		}
		si := p.stageIndex(f.Stage)
		if si < 0 {
			p.stages = append(p.stages, f.Stage)
			p.nodes = append(p.nodes, nil)
			si = len(p.stages) - 1
		}
		ns, err := p.loadFile(f)
		if err != nil {
			return nil, err
		}
		p.nodes[si] = append(p.nodes[si], ns...)
	}
	for _, ns := range p.nodes {
		p.top = append(p.top, ns...)
	}
	for i, n := range p.top {
		n.slot = i
	}
	p.vars = p.runVars()
	p.verdicts = p.newVerdicts()
	return p, nil
}

// count counts a hit (or a success) of n when it is a top-level node.
func (p *Pipeline) count(n *node, hit bool) {
	if n.slot < 0 {
		return
	}
	switch {
	case !p.batched && hit:
		n.hits.Add(1)
	case !p.batched:
		n.ok.Add(1)
	case hit:
		p.counts[n.slot].hits++
	default:
		p.counts[n.slot].ok++
	}
}

// FlushCounts adds a worker's node counts since the last flush to the
// totals Stats reads; other pipelines have none waiting.
func (p *Pipeline) FlushCounts() {
	for i := range p.counts {
		c, n := &p.counts[i], p.top[i]
		if c.hits > 0 {
			n.hits.Add(c.hits)
		}
		if c.ok > 0 {
			n.ok.Add(c.ok)
		}
		*c = nodeCount{}
	}
}

// Worker returns a pipeline for another goroutine: it shares p's compiled
// nodes, grok patterns (safe for concurrent use), expression environment
// (guarded) and counter totals, and has its own per-event scratch
// (expression variables, fold memo, run state, date memo) and node
// counts, which reach the totals when the worker calls FlushCounts.
// Events parsed by workers come out as p would make them unless
// CrossEvent.
func (p *Pipeline) Worker() *Pipeline {
	w := &Pipeline{env: p.env, opts: p.opts, stages: p.stages, nodes: p.nodes, grok: p.grok,
		unavailable: p.unavailable, missing: p.missing, crossEvent: p.crossEvent, proxy: p.proxy,
		top: p.top, counts: make([]nodeCount, len(p.top)), batched: true}
	w.vars = w.runVars()
	w.filterGroups = p.filterGroups
	w.verdicts = w.newVerdicts()
	return w
}

// CrossEvent reports whether a node carries state from one event to the
// next (stash entries, GetFromStash or SetInStash calls, statics writing
// to evt.Line, whose labels all lines of a source share): such a pipeline
// must parse events one at a time, in order.
func (p *Pipeline) CrossEvent() bool { return p.crossEvent }

// Env returns the expression environment the pipeline uses.
func (p *Pipeline) Env() *exprenv.Env { return p.env }

// MissingData lists data files named by parsers but absent from the data dir.
func (p *Pipeline) MissingData() []string { return append([]string(nil), p.missing...) }

// Stages returns the stage names in order.
func (p *Pipeline) Stages() []string { return append([]string(nil), p.stages...) }

func (p *Pipeline) stageIndex(s string) int {
	for i, x := range p.stages {
		if x == s {
			return i
		}
	}
	return -1
}

func (p *Pipeline) loadFile(f File) ([]*node, error) {
	b, err := yamlerr.ReadFile(f.Path, yamlerr.MaxHubFile)
	if err != nil {
		return nil, fmt.Errorf("load parser: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// The same documents as nodes, for the lines of compile errors
	// (KnownFields is lost inside node.Decode, so two decoders).
	nodes := yaml.NewDecoder(bytes.NewReader(b))
	var out []*node
	for {
		var spec nodeSpec
		err := dec.Decode(&spec)
		if errors.Is(err, io.EOF) {
			break
		}
		var doc yaml.Node
		if err == nil {
			err = nodes.Decode(&doc)
		}
		if err != nil {
			// One line, FILE:LINE: message, like every moat loader.
			werr := yamlerr.Wrap(f.Path, err)
			if strings.Contains(err.Error(), "not found in type") {
				return nil, unknownFieldError{werr}
			}
			return nil, werr
		}
		if spec.Name == "" && spec.Filter == "" && len(spec.Nodes) == 0 && spec.Grok.Pattern == "" && spec.Grok.Name == "" && len(spec.Statics) == 0 {
			continue // an empty document
		}
		if spec.Name == "" {
			return nil, &yamlerr.Error{File: f.Path, Line: yamlerr.LineOf(&doc), Msg: "parser node without a name"}
		}
		n, err := p.compileNode(&spec, spec.Name, f)
		if err != nil {
			// FILE:LINE of the key at fault, like every moat loader.
			return nil, &yamlerr.Error{File: f.Path, Line: yamlerr.LineFor(&doc, err, yamlerr.LineOf(&doc)), Msg: fmt.Sprintf("parser %s: %v", spec.Name, err), Err: err}
		}
		if n.onSuccess == "" {
			n.onSuccess = "continue"
		}
		out = append(out, n)
	}
	return out, nil
}

// unknownFieldError is a strict-decoding error that also matches
// ErrUnknownField.
type unknownFieldError struct{ error }

func (e unknownFieldError) Unwrap() []error { return []error{e.error, ErrUnknownField} }

func (p *Pipeline) compile(src string) (*vm.Program, error) {
	if strings.Contains(src, "GetFromStash") || strings.Contains(src, "SetInStash") {
		p.crossEvent = true
	}
	return p.env.Compile(src, p.typeVars())
}

// runVars are the variables of the VM runs on the event being parsed.
func (p *Pipeline) runVars() exprenv.EvtVars {
	if p.opts.Postoverflow {
		return exprenv.NewEvtVars((*OverflowEvent)(nil))
	}
	return exprenv.NewEvtVars((*detect.Event)(nil))
}

func (p *Pipeline) typeVars() map[string]any {
	if p.opts.Postoverflow {
		return map[string]any{"evt": &OverflowEvent{}}
	}
	return map[string]any{"evt": &detect.Event{}}
}

func (p *Pipeline) compileNode(s *nodeSpec, name string, f File) (*node, error) {
	n := &node{name: name, stage: f.Stage, file: f.Path, onSuccess: s.OnSuccess, slot: -1, filterGroup: -1}
	if s.Name != "" {
		n.name = s.Name
	}
	switch n.onSuccess {
	case "", "continue", "next_stage":
	default:
		return nil, yamlerr.AtKey(fmt.Errorf("onsuccess %q: want next_stage or continue", s.OnSuccess), "onsuccess")
	}
	for i, d := range s.Data {
		switch d.Type {
		case "string", "regexp", "map":
			if err := p.env.LoadData(d); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					return nil, yamlerr.AtKey(err, "data", i)
				}
				// A missing data file behaves as an empty one, as when the
				// hub's data service is unreachable; Missing lists it.
				p.missing = append(p.missing, d.DestFile)
			}
		}
		// Untyped entries (GeoIP databases) are enricher resources.
	}
	geo := p.geoFor(geoDataURLs(s.Data))
	var err error
	if s.Filter != "" {
		if n.filter, err = p.compile(s.Filter); err != nil {
			return nil, yamlerr.AtKey(fmt.Errorf("filter: %w", err), "filter")
		}
		if !p.opts.Postoverflow {
			if n.fastFilter, err = p.env.CompileEvt(s.Filter, p.typeVars()); err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("filter: %w", err), "filter")
			}
			p.groupFilter(n)
		}
	}
	for k, v := range s.PatternSyntax {
		p.grok.Add(k, v)
	}
	if s.Grok.Pattern != "" || s.Grok.Name != "" {
		src := s.Grok.Pattern
		if src == "" {
			src = "%{" + s.Grok.Name + "}"
		}
		if n.grok, err = p.grok.Compile(src); err != nil {
			key := "pattern"
			if s.Grok.Pattern == "" {
				key = "name"
			}
			return nil, yamlerr.AtKey(fmt.Errorf("grok: %w", err), "grok", key)
		}
		switch {
		case s.Grok.ApplyOn != "":
			n.grokApply = strings.TrimPrefix(s.Grok.ApplyOn, "evt.")
			if n.grokApply != "Line.Raw" {
				n.grokApply = strings.TrimPrefix(n.grokApply, "Parsed.")
			}
		case s.Grok.Expression != "":
			if n.grokExpr, err = p.compile(s.Grok.Expression); err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("grok expression: %w", err), "grok", "expression")
			}
		default:
			return nil, yamlerr.AtKey(fmt.Errorf("grok without apply_on or expression"), "grok")
		}
		if n.grokStatics, err = p.compileStatics(s.Grok.Statics, geo); err != nil {
			return nil, yamlerr.AtKey(err, "grok", "statics")
		}
	}
	if n.statics, err = p.compileStatics(s.Statics, geo); err != nil {
		return nil, yamlerr.AtKey(err, "statics")
	}
	if w := s.Whitelist; w.Reason != "" || len(w.IPs)+len(w.CIDRs)+len(w.Expression) > 0 {
		n.wl = &whitelist{reason: w.Reason}
		for i, ip := range w.IPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("whitelist ip: %w", err), "whitelist", "ip", i)
			}
			n.wl.ips = append(n.wl.ips, a.Unmap())
		}
		for i, c := range w.CIDRs {
			pf, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("whitelist cidr: %w", err), "whitelist", "cidr", i)
			}
			n.wl.cidrs = append(n.wl.cidrs, pf.Masked())
		}
		for i, e := range w.Expression {
			pr, err := p.compile(e)
			if err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("whitelist expression: %w", err), "whitelist", "expression", i)
			}
			n.wl.exprs = append(n.wl.exprs, pr)
		}
	}
	if len(s.Stash) > 0 {
		p.crossEvent = true
	}
	for i, st := range s.Stash {
		if st.Name == "" || st.Key == "" || st.Value == "" {
			return nil, yamlerr.AtKey(fmt.Errorf("stash needs name, key and value"), "stash", i)
		}
		ttl, err := parseDuration(st.TTL)
		if err != nil {
			return nil, yamlerr.AtKey(fmt.Errorf("stash %s: %w", st.Name, err), "stash", i, "ttl")
		}
		p.env.CreateStash(st.Name, ttl, st.Size)
		e := stashEntry{name: st.Name}
		if e.key, err = p.compile(st.Key); err != nil {
			return nil, yamlerr.AtKey(fmt.Errorf("stash key: %w", err), "stash", i, "key")
		}
		if e.value, err = p.compile(st.Value); err != nil {
			return nil, yamlerr.AtKey(fmt.Errorf("stash value: %w", err), "stash", i, "value")
		}
		n.stash = append(n.stash, e)
	}
	for i := range s.Nodes {
		c, err := p.compileNode(&s.Nodes[i], n.name, f)
		if err != nil {
			return nil, yamlerr.AtKey(fmt.Errorf("node %d: %w", i, err), "nodes", i)
		}
		n.children = append(n.children, c)
	}
	if n.grok == nil && len(n.children) == 0 && len(n.statics) == 0 && n.filter == nil && n.wl.empty() && len(n.stash) == 0 {
		return nil, fmt.Errorf("node does nothing")
	}
	n.pureMiss = n.grok != nil && n.grok.Tier() != grok.Fast && n.grokExpr == nil && n.grokApply != "" && n.grokApply != "Line.Raw" &&
		n.filter == nil && n.wl.empty() && len(n.stash) == 0 && len(n.children) == 0
	n.runs = siblingRuns(n.children)
	return n, nil
}

func (p *Pipeline) compileStatics(specs []staticSpec, geo GeoIP) ([]static, error) {
	out := make([]static, 0, len(specs))
	for i, s := range specs {
		st := static{value: s.Value}
		switch {
		case s.Method != "":
			st.kind, st.key = staticMethod, s.Method
			st.method = p.enricher(s.Method, geo)
		case s.Parsed != "":
			st.kind, st.key = staticParsed, s.Parsed
		case s.Meta != "":
			st.kind, st.key = staticMeta, s.Meta
		case s.Enriched != "":
			st.kind, st.key = staticEnriched, s.Enriched
		case s.Target != "":
			st.kind, st.path = staticTarget, parseTargetPath(s.Target)
			if st.path[0] == "Line" {
				// A line's labels are one map for every line of a source.
				p.crossEvent = true
			}
		default:
			return nil, yamlerr.AtKey(fmt.Errorf("static without parsed, meta, enriched, target or method"), i)
		}
		if s.Value == "" && s.Expression != "" {
			pr, err := p.compile(s.Expression)
			if err != nil {
				return nil, yamlerr.AtKey(fmt.Errorf("static expression: %w", err), i, "expression")
			}
			st.expr = pr
			if !p.opts.Postoverflow {
				st.get = fieldGetter(s.Expression)
				if st.get == nil {
					st.get = lenGetter(s.Expression)
				}
				if st.get == nil {
					if st.fast, err = p.env.CompileEvt(s.Expression, p.typeVars()); err != nil {
						return nil, yamlerr.AtKey(fmt.Errorf("static expression: %w", err), i, "expression")
					}
				}
			}
		}
		out = append(out, st)
	}
	return out, nil
}
