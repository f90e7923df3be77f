package scenario

import (
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// requirement is a leading conjunct of a filter that tests one meta value
// against literals (evt.Meta.log_type in [...], evt.Meta.http_status ==
// '404'). A filter is false whenever one of its requirements fails, and
// nothing runs before them, so events can be sorted to scenarios by their
// meta values alone.
type requirement struct {
	key    string
	values map[string]bool
}

// requirements returns the leading meta tests of filter, in order.
func requirements(filter string) []requirement {
	tree, err := parser.Parse(filter)
	if err != nil {
		return nil
	}
	var conj []ast.Node
	var flatten func(n ast.Node)
	flatten = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			flatten(b.Left)
			flatten(b.Right)
			return
		}
		conj = append(conj, n)
	}
	flatten(tree.Node)
	var out []requirement
	for _, c := range conj {
		r, ok := metaTest(c)
		if !ok {
			break
		}
		out = append(out, r)
	}
	return out
}

func metaTest(n ast.Node) (requirement, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return requirement{}, false
	}
	key, ok := metaKey(b.Left)
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
