package scenario

import (
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
)

// requirement is a leading conjunct of a filter that tests one meta value
// (or the event's type, see typeKey) against literals (evt.Meta.log_type
// in [...], evt.Meta.http_status == '404'). A filter is false whenever one of its requirements fails, and
// nothing runs before them, so events can be sorted to scenarios by their
// meta values alone.
type requirement struct {
	key    string
	values map[string]bool
}

// requirements returns the meta tests of filter's conjunction that come
// before anything with side effects, in order. Conjuncts are found through
// "let x = pure; ..." and "if cond { ... } else { false }" (cond must
// hold) too.
func requirements(filter string) []requirement {
	var out []requirement
	conj, _ := leadingConjuncts(filter)
	for _, c := range conj {
		if r, ok := metaTest(c); ok {
			out = append(out, r)
		}
	}
	return out
}

// leadingConjuncts are the conjuncts of filter, in order, up to the first
// that may have side effects (see requirements), and the values of the
// lets they are under.
func leadingConjuncts(filter string) ([]ast.Node, map[string]ast.Node) {
	tree, err := parser.Parse(filter)
	if err != nil {
		return nil, nil
	}
	lets := map[string]ast.Node{}
	var conj []ast.Node
	var flatten func(n ast.Node)
	flatten = func(n ast.Node) {
		switch x := n.(type) {
		case *ast.BinaryNode:
			if x.Operator == "&&" || x.Operator == "and" {
				flatten(x.Left)
				flatten(x.Right)
				return
			}
		case *ast.VariableDeclaratorNode:
			if x.Name != "evt" && exprenv.Pure(x.Value) {
				lets[x.Name] = x.Value
				flatten(x.Expr)
				return
			}
		case *ast.ConditionalNode:
			if f, ok := x.Exp2.(*ast.BoolNode); ok && !f.Value {
				// The filter holds only if cond does; what follows
				// cond is not a conjunct.
				flatten(x.Cond)
				conj = append(conj, nil)
				return
			}
		}
		conj = append(conj, n)
	}
	flatten(tree.Node)
	for i, c := range conj {
		if c == nil {
			return conj[:i], lets
		}
		if _, ok := metaTest(c); !ok && !exprenv.Pure(c) {
			if d := sideEffectGate(c); d != nil {
				return append(conj[:i], d), lets
			}
			return conj[:i], lets
		}
	}
	return conj, lets
}

// sideEffectGate returns, for any(xs, {cond ? effect : false}), the
// pure any(xs, {cond}): the effect runs only for an element cond holds
// for, so where the gate fails the conjunct is false and did nothing
// (the hub's CVE lists tag the event with evt.SetMeta this way). Nil for
// any other conjunct.
func sideEffectGate(n ast.Node) ast.Node {
	b, ok := n.(*ast.BuiltinNode)
	if !ok || b.Name != "any" || len(b.Arguments) != 2 || !exprenv.Pure(b.Arguments[0]) {
		return nil
	}
	p, ok := b.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return nil
	}
	c, ok := p.Node.(*ast.ConditionalNode)
	if !ok {
		return nil
	}
	if f, ok := c.Exp2.(*ast.BoolNode); !ok || f.Value || !exprenv.Pure(c.Cond) {
		return nil
	}
	return &ast.BuiltinNode{Name: "any", Arguments: []ast.Node{b.Arguments[0], &ast.PredicateNode{Node: c.Cond}}}
}

// typeKey is the requirement key of a test of the event's type
// (evt.GetType() == 'overflow'): events poured again from an overflow go
// only to the scenarios that take them, and log events never reach those.
const typeKey = "\x00GetType"

// overflowMeta are the meta keys an overflow poured again carries (its
// source, see engine.reprocessEvent); its other meta values are "".
var overflowMeta = map[string]bool{"source_ip": true, "SourceRange": true}

// mayTakeOverflow reports whether sc's requirements may hold for an
// overflow poured again.
func (sc *scenario) mayTakeOverflow() bool {
	for _, r := range sc.reqs {
		switch {
		case r.key == typeKey:
			if !r.values[detect.TypeOverflow] {
				return false
			}
		case overflowMeta[r.key]:
		case !r.values[""]:
			return false
		}
	}
	return true
}

// TakesOverflows reports whether any scenario may take an overflow
// poured again: when none does, pouring one cannot change a bucket, and
// the caller may skip building it.
func (s *Set) TakesOverflows() bool { return s.takesOverflows }

// reqValue is the value of evt a requirement with key tests.
func reqValue(evt *detect.Event, key string) string {
	if key == typeKey {
		return evt.GetType()
	}
	return evt.Meta[key]
}

func metaTest(n ast.Node) (requirement, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return requirement{}, false
	}
	key, ok := metaKey(b.Left)
	if !ok && isGetType(b.Left) {
		key, ok = typeKey, true
	}
	if !ok {
		return requirement{}, false
	}
	r := requirement{key: key, values: map[string]bool{}}
	switch b.Operator {
	case "==":
		s, ok := b.Right.(*ast.StringNode)
		if !ok {
			return requirement{}, false
		}
		r.values[s.Value] = true
	case "in":
		arr, ok := b.Right.(*ast.ArrayNode)
		if !ok {
			return requirement{}, false
		}
		for _, e := range arr.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return requirement{}, false
			}
			r.values[s.Value] = true
		}
	default:
		return requirement{}, false
	}
	return r, true
}

// metaKey recognises evt.Meta.k and evt.Meta["k"].
func metaKey(n ast.Node) (string, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Method {
		return "", false
	}
	k, ok := m.Property.(*ast.StringNode)
	if !ok {
		return "", false
	}
	inner, ok := m.Node.(*ast.MemberNode)
	if !ok || inner.Method {
		return "", false
	}
	if p, ok := inner.Property.(*ast.StringNode); !ok || p.Value != "Meta" {
		return "", false
	}
	if id, ok := inner.Node.(*ast.IdentifierNode); !ok || id.Value != "evt" {
		return "", false
	}
	return k.Value, true
}

// isGetType recognises evt.GetType().
func isGetType(n ast.Node) bool {
	c, ok := n.(*ast.CallNode)
	if !ok || len(c.Arguments) != 0 {
		return false
	}
	m, ok := c.Callee.(*ast.MemberNode)
	if !ok || !m.Method {
		return false
	}
	if p, ok := m.Property.(*ast.StringNode); !ok || p.Value != "GetType" {
		return false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	return ok && id.Value == "evt"
}
