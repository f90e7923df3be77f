package scenario

import (
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/internal/litscan"
	"github.com/moatsec/moat/detect/internal/rxlit"
)

// A hub with many HTTP scenarios runs, for every access log line, dozens
// of filters that each test one field for a literal: the CVE probes
// (Upper(evt.Meta.http_path) contains '/TMUI/...'), the data-file probes
// (any(File('sqli.txt'), {Upper(evt.Parsed.http_args) contains
// Upper(#)})). Guards decide those tests for every scenario at once: one
// scan of each field for all the literals any filter looks for, after
// which only the scenarios whose literal is there run their filter.
//
// A guard is a necessary condition of a filter, in clauses that must all
// hold, each a disjunction of atoms "term contains literal" (startsWith,
// endsWith and == relax to contains) or "term == literal". Clauses come
// from the filter's leading pure conjuncts, as requirements do: nothing
// with side effects runs before them, so skipping the filter when one
// fails skips nothing it would have done.

// guardTerm is a string term of the filters (a field, or a fold of one)
// and the literals guards look for in it.
type guardTerm struct {
	prog *exprenv.Program
	// contains finds the literals of contains atoms, lits by index;
	// containsClause is the clause of each. equal maps a value to the
	// clauses an atom "term == value" of which it satisfies.
	contains       *litscan.Scanner
	lits           []string
	containsClause []int
	equal          map[string][]int
	// unbounded: the contains literals were too many for an automaton;
	// every clause of the term counts as holding.
	unbounded bool
	// fold: the term's value is scanned without regard to ASCII case,
	// and a value that is not all ASCII decides nothing.
	fold bool
	// field reads the one event field the term is a pure function of
	// (QueryUnescape(evt.Meta.http_path), the field itself), nil when it
	// reads more or calls anything else; derived: the term is not the
	// field itself. Verdicts are then cached by the field's value, which
	// spares computing the term.
	field    func(*detect.Event) string
	fieldKey string // "Meta.X" or "Parsed.X"
	derived  bool
	// group is the term's termGroup, -1 when its verdicts are not cached.
	group int
	// pred: the term is a whole conjunct (see atomBuilder.predicate), true
	// for the predClauses.
	pred        bool
	predClauses []int
}

// cached reports whether the term's verdicts are worth caching: a scan,
// or a value to compute, costs more than a lookup.
func (gt *guardTerm) cached() bool { return gt.contains != nil || gt.derived || gt.pred }

// soleField returns a reader of the one event field (evt.Meta.X or
// evt.Parsed.X) n is a pure function of, its name, and whether n is that
// field itself; nil when n reads anything else.
func soleField(n ast.Node) (func(*detect.Event) string, string, bool) {
	f, plain, ok := exprenv.SoleField(n)
	if !ok {
		return nil, "", false
	}
	return f.Reader(), f.Kind + "." + f.Name, plain
}

// termGroup is the cached terms that read one field, or a cached term
// that reads several (field nil): one lookup of the field's value gives
// the verdicts of all.
type termGroup struct {
	field func(*detect.Event) string
	terms []int
}

// groupTerms puts each cached term in the group of its field.
func (g *guards) groupTerms() {
	byField := map[string]int{}
	for t, gt := range g.terms {
		gt.group = -1
		if gt.unbounded || !gt.cached() {
			continue
		}
		k, ok := byField[gt.fieldKey]
		if gt.field == nil || !ok {
			k = len(g.groups)
			g.groups = append(g.groups, &termGroup{field: gt.field})
			if gt.field != nil {
				byField[gt.fieldKey] = k
			}
		}
		gt.group = k
		g.groups[k].terms = append(g.groups[k].terms, t)
	}
}

// guardClause holds when one of its atoms does; terms are those its
// atoms test.
type guardClause struct {
	id    int
	terms []int
}

// guards are a set's guards, shared by its matchers.
type guards struct {
	terms   []*guardTerm
	groups  []*termGroup
	clauses int
	// of is each scenario's clauses, by scenario index (nil: no guard).
	of [][]guardClause
}

// pendingAtom is an atom of a clause being read: "term contains lit",
// or == when equal.
type pendingAtom struct {
	term  int
	lit   string
	equal bool
}

// predicate makes a pure conjunct that reads one field an atom of its
// own (RegexpInFile(evt.Parsed.http_user_agent, 'bad_user_agents.txt')):
// not a literal test, but its verdicts are cached by the field's value
// as other terms' are, so that it is computed once per value, not once
// per event.
func (b *atomBuilder) predicate(n ast.Node) (pendingAtom, bool) {
	field, fieldKey, _ := soleField(n)
	if field == nil {
		return pendingAtom{}, false
	}
	text := n.String()
	key := "pred:" + text
	t, ok := b.byText[key]
	if !ok {
		t = -1
		if prog, err := b.env.CompileEvt(text, map[string]any{"evt": &detect.Event{}}); err == nil {
			t = len(b.g.terms)
			b.g.terms = append(b.g.terms, &guardTerm{prog: prog, pred: true, field: field, fieldKey: fieldKey})
			b.cont = append(b.cont, nil)
		}
		b.byText[key] = t
	}
	if t < 0 {
		return pendingAtom{}, false
	}
	return pendingAtom{term: t}, true
}

// atomBuilder collects the atoms of one set's guards.
type atomBuilder struct {
	g *guards
	// byText numbers the terms by text; a term the native evaluator
	// cannot read is -1.
	byText map[string]int
	cont   [][]string
	env    *exprenv.Env
	// lets are the let values of the filter at hand: a term naming one
	// is its value.
	lets map[string]ast.Node
}

// buildGuards makes the guards of scs' filters; nil when no filter has
// one.
func buildGuards(scs []*scenario, env *exprenv.Env) *guards {
	b := &atomBuilder{g: &guards{of: make([][]guardClause, len(scs))}, byText: map[string]int{}, env: env}
	guarded := false
	for i, sc := range scs {
		conj, lets := leadingConjuncts(sc.spec.Filter)
		b.lets = lets
		for _, c := range conj {
			if _, isReq := metaTest(c); isReq {
				continue
			}
			if atoms, ok := b.clause(c); ok {
				b.g.of[i] = append(b.g.of[i], b.add(atoms))
				guarded = true
			} else if atom, ok := b.predicate(c); ok {
				b.g.of[i] = append(b.g.of[i], b.add([]pendingAtom{atom}))
				guarded = true
			}
		}
	}
	if !guarded {
		return nil
	}
	for t, lits := range b.cont {
		if len(lits) > 0 {
			gt := b.g.terms[t]
			gt.contains, gt.lits = litscan.New(lits, gt.fold), lits
			gt.unbounded = gt.contains == nil
		}
	}
	b.g.groupTerms()
	return b.g
}

// add registers the atoms of a clause.
func (b *atomBuilder) add(atoms []pendingAtom) guardClause {
	cl := guardClause{id: b.g.clauses}
	b.g.clauses++
	for _, a := range atoms {
		gt := b.g.terms[a.term]
		if !slices.Contains(cl.terms, a.term) {
			cl.terms = append(cl.terms, a.term)
		}
		if gt.pred {
			gt.predClauses = append(gt.predClauses, cl.id)
			continue
		}
		if a.equal {
			if !slices.Contains(gt.equal[a.lit], cl.id) {
				gt.equal[a.lit] = append(gt.equal[a.lit], cl.id)
			}
			continue
		}
		b.cont[a.term] = append(b.cont[a.term], a.lit)
		gt.containsClause = append(gt.containsClause, cl.id)
	}
	return cl
}

// clause turns a disjunction of atoms into a clause.
func (b *atomBuilder) clause(n ast.Node) ([]pendingAtom, bool) {
	if x, ok := n.(*ast.BinaryNode); ok && (x.Operator == "or" || x.Operator == "||") {
		l, ok := b.clause(x.Left)
		if !ok {
			return nil, false
		}
		r, ok := b.clause(x.Right)
		if !ok {
			return nil, false
		}
		return append(l, r...), true
	}
	return b.atoms(n)
}

// atoms are the atoms of one test: a literal test of a term, a term in an
// array of literals, or any() over a data file's lines.
func (b *atomBuilder) atoms(n ast.Node) ([]pendingAtom, bool) {
	switch x := n.(type) {
	case *ast.BinaryNode:
		switch x.Operator {
		case "contains", "startsWith", "endsWith", "==":
			lit, ok := exprenv.ConstString(x.Right)
			term := x.Left
			if !ok && x.Operator == "==" {
				lit, ok = exprenv.ConstString(x.Left)
				term = x.Right
			}
			if !ok {
				return nil, false
			}
			return b.atom(term, lit, x.Operator == "==")
		case "matches":
			rx, ok := exprenv.ConstString(x.Right)
			if !ok {
				return nil, false
			}
			lits := requiredLiterals(rx)
			if lits == nil {
				return nil, false
			}
			var out []pendingAtom
			for _, l := range lits {
				a, ok := b.atom(x.Left, l, false)
				if !ok {
					return nil, false
				}
				out = append(out, a...)
			}
			return out, true
		case "in":
			arr, ok := x.Right.(*ast.ArrayNode)
			if !ok {
				return nil, false
			}
			var out []pendingAtom
			for _, e := range arr.Nodes {
				lit, ok := exprenv.ConstString(e)
				if !ok {
					return nil, false
				}
				a, ok := b.atom(x.Left, lit, true)
				if !ok {
					return nil, false
				}
				out = append(out, a...)
			}
			return out, true
		}
	case *ast.BuiltinNode:
		return b.anyFile(x)
	}
	return nil, false
}

// anyFile reads any(File('f'), {term OP fold(#)}) as one atom per line.
func (b *atomBuilder) anyFile(x *ast.BuiltinNode) ([]pendingAtom, bool) {
	ft, ok := exprenv.ReadFileTest(x)
	if !ok || ft.Guarded || ft.Op == "matches" || strings.HasPrefix(ft.Fold, "json:") {
		return nil, false
	}
	lines, ok := b.env.FileTestLines(ft)
	if !ok {
		return nil, false
	}
	out := []pendingAtom{}
	for _, l := range lines {
		a, ok := b.atom(ft.X, l, ft.Op == "==")
		if !ok {
			return nil, false
		}
		out = append(out, a...)
	}
	return out, true
}

// atom reads "term contains lit" (or == when equal). A contains literal
// shorter than minRequired is in most fields: no guard.
func (b *atomBuilder) atom(term ast.Node, lit string, equal bool) ([]pendingAtom, bool) {
	if !equal && len(lit) < minRequired {
		return nil, false
	}
	if id, ok := term.(*ast.IdentifierNode); ok && b.lets[id.Value] != nil {
		term = b.lets[id.Value]
	}
	// Upper(x) contains L implies that x holds L but for ASCII case, when
	// x is ASCII: x is scanned once, case-folded, for the literals of
	// Upper(x), Lower(x) and x alike, and never folded.
	fold := false
	if c, ok := term.(*ast.CallNode); ok && !equal && len(c.Arguments) == 1 {
		if id, ok := c.Callee.(*ast.IdentifierNode); ok && (id.Value == "Upper" || id.Value == "Lower") {
			term, fold = c.Arguments[0], true
		}
	}
	text := term.String()
	key := text
	if fold {
		key = "fold:" + text
	}
	t, ok := b.byText[key]
	if !ok {
		t = -1
		prog, err := b.env.CompileEvt(text, map[string]any{"evt": &detect.Event{}})
		if err == nil {
			if _, decided := prog.String(new(exprenv.Memo), detect.NewEvent(detect.Line{})); decided {
				t = len(b.g.terms)
				gt := &guardTerm{prog: prog, fold: fold, equal: map[string][]int{}}
				var plain bool
				gt.field, gt.fieldKey, plain = soleField(term)
				gt.derived = gt.field != nil && !plain
				b.g.terms = append(b.g.terms, gt)
				b.cont = append(b.cont, nil)
			}
		}
		b.byText[key] = t
	}
	if t < 0 {
		// Not a string the native evaluator reads.
		return nil, false
	}
	return []pendingAtom{{term: t, lit: lit, equal: equal}}, true
}

// minRequired is the shortest literal a contains guard looks for: a
// single byte is in most fields anyway.
const minRequired = 2

// requiredLiterals returns literals one of which every match of the
// regexp rx holds (see rxlit.OneOf), nil when it has none.
func requiredLiterals(rx string) []string {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return nil
	}
	return rxlit.OneOf(re, minRequired)
}

// guardState is a matcher's scratch for one event's guards.
type guardState struct {
	gen uint32
	// termGen marks the terms evaluated on this event; termUnknown those
	// the native evaluator could not read (their clauses count as
	// holding). clauseGen marks the clauses that hold.
	termGen     []uint32
	termUnknown []bool
	clauseGen   []uint32
	hits        []int
	// seen caches, per termGroup, the verdicts of its terms by value:
	// log fields repeat (a handful of user agents, the same paths), and
	// a lookup costs a hash where a scan costs a table step per byte, and
	// computing a term (an unescape) more.
	seen []scanCache
	// seenBytes bounds the value bytes each scanCache keeps.
	seenBytes int
}

// scanCache maps the values of a termGroup's field (of its term when
// it has no field) to its terms' verdicts. It keeps values of at most
// maxSeenLen bytes, seenBytes in all counting seenEntryCost for each, and
// starts over when full: values are attacker-chosen, the memory is not
// (a few hundred KiB per group).
type scanCache struct {
	m     map[string]verdict
	bytes int
}

// verdict is what a value decides for the terms of a group: the clauses
// their atoms satisfy, and the terms it decides nothing for.
type verdict struct {
	clauses []int32
	unknown []int32
}

const (
	maxSeenLen    = 512
	maxSeenBytes  = 256 << 10
	seenEntryCost = 96 // the map slot, string header and verdict slices
)

func newGuardState(g *guards) *guardState {
	return &guardState{termGen: make([]uint32, len(g.terms)), termUnknown: make([]bool, len(g.terms)), clauseGen: make([]uint32, g.clauses),
		seen: make([]scanCache, len(g.groups)), seenBytes: maxSeenBytes}
}

// next starts a new event.
func (st *guardState) next() {
	st.gen++
	if st.gen == 0 {
		clear(st.termGen)
		clear(st.clauseGen)
		st.gen = 1
	}
}

// passes reports whether sc's guard holds for evt.
func (g *guards) passes(st *guardState, sc *scenario, evt *detect.Event, memo *exprenv.Memo) bool {
	for _, cl := range g.of[sc.idx] {
		unknown := false
		for _, t := range cl.terms {
			if st.termGen[t] != st.gen {
				g.eval(st, t, evt, memo)
			}
			unknown = unknown || st.termUnknown[t]
		}
		if !unknown && st.clauseGen[cl.id] != st.gen {
			return false
		}
	}
	return true
}

// eval reads term t of evt, and the terms of its group, and marks the
// clauses their atoms satisfy.
func (g *guards) eval(st *guardState, t int, evt *detect.Event, memo *exprenv.Memo) {
	gt := g.terms[t]
	st.termGen[t] = st.gen
	st.termUnknown[t] = true
	if gt.unbounded {
		return
	}
	var key string
	if gt.field != nil {
		key = gt.field(evt)
	} else {
		var ok bool
		if key, ok = gt.prog.String(memo, evt); !ok {
			return
		}
	}
	if gt.group < 0 {
		st.termUnknown[t] = false
		for _, c := range gt.equal[key] {
			st.clauseGen[c] = st.gen
		}
		return
	}
	gr := g.groups[gt.group]
	c := &st.seen[gt.group]
	v, ok := c.m[key]
	if !ok {
		v = g.decide(st, gr, key, evt, memo)
		if len(key) <= maxSeenLen {
			if c.m == nil || c.bytes+len(key)+seenEntryCost > st.seenBytes {
				c.m, c.bytes = make(map[string]verdict, len(c.m)), 0
			}
			// A clone: the key must not pin the line it came from.
			c.m[strings.Clone(key)] = v
			c.bytes += len(key) + seenEntryCost
		}
	}
	for _, u := range gr.terms {
		st.termGen[u] = st.gen
		st.termUnknown[u] = false
	}
	for _, u := range v.unknown {
		st.termUnknown[u] = true
	}
	for _, cl := range v.clauses {
		st.clauseGen[cl] = st.gen
	}
}

// decide returns the verdicts of gr's terms on evt, whose group key
// (see eval) is key.
func (g *guards) decide(st *guardState, gr *termGroup, key string, evt *detect.Event, memo *exprenv.Memo) verdict {
	var v verdict
	add := func(cl int) {
		if !slices.Contains(v.clauses, int32(cl)) {
			v.clauses = append(v.clauses, int32(cl))
		}
	}
	for _, t := range gr.terms {
		gt := g.terms[t]
		if gt.pred {
			holds, ok := gt.prog.Bool(memo, evt)
			if !ok {
				v.unknown = append(v.unknown, int32(t))
			} else if holds {
				for _, cl := range gt.predClauses {
					add(cl)
				}
			}
			continue
		}
		val := key
		if gt.derived {
			var ok bool
			if val, ok = gt.prog.String(memo, evt); !ok {
				v.unknown = append(v.unknown, int32(t))
				continue
			}
		}
		if gt.contains != nil {
			var ascii bool
			st.hits, ascii = gt.contains.Find(val, st.hits[:0])
			if gt.fold && !ascii {
				v.unknown = append(v.unknown, int32(t))
				continue
			}
			for _, i := range st.hits {
				add(gt.containsClause[i])
			}
		}
		for _, cl := range gt.equal[val] {
			add(cl)
		}
	}
	return v
}
