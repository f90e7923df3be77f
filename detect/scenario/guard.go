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
				b.g.terms = append(b.g.terms, &guardTerm{prog: prog, fold: fold, equal: map[string][]int{}})
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
	// seen caches, per term with contains atoms, what the automaton made
	// of a value: log fields repeat (a handful of user agents, the same
	// paths), and a lookup costs a hash where a scan costs a table step
	// per byte.
	seen []scanCache
	// seenBytes bounds the value bytes each scanCache keeps.
	seenBytes int
}

// scanCache maps a term's values to the clauses their contains atoms
// satisfy, nil for a value that decides nothing (see guardTerm.fold). It
// keeps values of at most maxSeenLen bytes, seenBytes in all counting
// seenEntryCost for each, and starts over when full: values are
// attacker-chosen, the memory is not (a few hundred KiB per term).
type scanCache struct {
	m     map[string][]int32
	bytes int
}

const (
	maxSeenLen    = 512
	maxSeenBytes  = 256 << 10
	seenEntryCost = 64 // the map slot, string header and clause slice
)

func newGuardState(g *guards) *guardState {
	return &guardState{termGen: make([]uint32, len(g.terms)), termUnknown: make([]bool, len(g.terms)), clauseGen: make([]uint32, g.clauses),
		seen: make([]scanCache, len(g.terms)), seenBytes: maxSeenBytes}
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

// eval reads term t of evt and marks the clauses its atoms satisfy.
func (g *guards) eval(st *guardState, t int, evt *detect.Event, memo *exprenv.Memo) {
	st.termGen[t] = st.gen
	gt := g.terms[t]
	v, ok := gt.prog.String(memo, evt)
	st.termUnknown[t] = !ok || gt.unbounded
	if st.termUnknown[t] {
		return
	}
	for _, c := range gt.equal[v] {
		st.clauseGen[c] = st.gen
	}
	if gt.contains == nil {
		return
	}
	c := &st.seen[t]
	clauses, ok := c.m[v]
	if !ok {
		clauses = st.scan(gt, v)
		if len(v) <= maxSeenLen {
			if c.m == nil || c.bytes+len(v)+seenEntryCost > st.seenBytes {
				c.m, c.bytes = make(map[string][]int32, len(c.m)), 0
			}
			// A clone: the key must not pin the line it came from.
			c.m[strings.Clone(v)] = clauses
			c.bytes += len(v) + seenEntryCost
		}
	}
	if clauses == nil {
		st.termUnknown[t] = true
		return
	}
	for _, cl := range clauses {
		st.clauseGen[cl] = st.gen
	}
}

// scan runs gt's automaton on v and returns the clauses its contains
// atoms satisfy, without repeats, or nil when v decides nothing.
func (st *guardState) scan(gt *guardTerm, v string) []int32 {
	var ascii bool
	st.hits, ascii = gt.contains.Find(v, st.hits[:0])
	if gt.fold && !ascii {
		return nil
	}
	clauses := make([]int32, 0, len(st.hits))
	for _, i := range st.hits {
		if cl := int32(gt.containsClause[i]); !slices.Contains(clauses, cl) {
			clauses = append(clauses, cl)
		}
	}
	return clauses
}
