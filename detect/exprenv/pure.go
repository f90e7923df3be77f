package exprenv

import (
	"github.com/expr-lang/expr/ast"

	"github.com/moatsec/moat/detect"
)

// pureCalls are the helpers without side effects: calling one cannot
// change the event or the stash.
var pureCalls = map[string]bool{
	"Upper": true, "Lower": true, "TrimSpace": true, "QueryUnescape": true, "PathUnescape": true,
	"File": true, "RegexpInFile": true, "LookupFile": true, "JsonExtract": true, "IpInRange": true,
	"IsIP": true, "IsIPV4": true, "IsIPV6": true,
}

// Pure reports whether evaluating n cannot change the event or the stash:
// field reads, literals, operators and pure helpers only. Skipping a pure
// expression skips nothing it would have done.
func Pure(n ast.Node) bool {
	ok := true
	var v pureVisitor
	v.ok = &ok
	ast.Walk(&n, v)
	return ok
}

type pureVisitor struct{ ok *bool }

func (v pureVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NilNode,
		*ast.IdentifierNode, *ast.ArrayNode, *ast.BinaryNode, *ast.UnaryNode, *ast.ChainNode,
		*ast.PointerNode, *ast.PredicateNode, *ast.ConditionalNode:
	case *ast.MemberNode:
		if x.Method {
			*v.ok = false
		}
	case *ast.CallNode:
		id, isID := x.Callee.(*ast.IdentifierNode)
		if !isID || !pureCalls[id.Value] {
			*v.ok = false
		}
	case *ast.BuiltinNode:
		switch x.Name {
		case "any", "all", "none", "one", "len", "lower", "upper", "trim":
		default:
			*v.ok = false
		}
	default:
		*v.ok = false
	}
}

// Field is an event field a map holds: evt.Meta.Name or evt.Parsed.Name.
type Field struct{ Kind, Name string }

// Reader returns a reader of the field's value ("" when an event has
// none, as expressions see it).
func (f Field) Reader() func(*detect.Event) string {
	name := f.Name
	if f.Kind == "Meta" {
		return func(e *detect.Event) string { return e.Meta[name] }
	}
	return func(e *detect.Event) string { return e.Parsed[name] }
}

// SoleField returns the one event field n is a pure function of (see
// Pure), and whether n is that field itself; ok is false when n reads
// anything else. n's value on an event is then decided by the field's.
func SoleField(n ast.Node) (f Field, plain, ok bool) {
	if !Pure(n) {
		return Field{}, false, false
	}
	v := &fieldVisitor{}
	ast.Walk(&n, v)
	if v.other || v.kind == "" || v.evts != v.fields {
		return Field{}, false, false
	}
	_, plain = n.(*ast.MemberNode)
	return Field{Kind: v.kind, Name: v.name}, plain, true
}

// fieldVisitor finds the event fields an expression reads: other is set
// when it reads another part of the event, two fields, or a name that is
// neither evt nor a helper (a let, whose value is elsewhere).
type fieldVisitor struct {
	kind, name   string
	evts, fields int
	other        bool
}

func (v *fieldVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "evt" {
			v.evts++
		} else if !pureCalls[x.Value] {
			v.other = true
		}
	case *ast.MemberNode:
		obj, ok := x.Node.(*ast.MemberNode)
		if !ok {
			return
		}
		root, ok := obj.Node.(*ast.IdentifierNode)
		if !ok || root.Value != "evt" {
			return
		}
		k, ok1 := obj.Property.(*ast.StringNode)
		p, ok2 := x.Property.(*ast.StringNode)
		if !ok1 || !ok2 || (k.Value != "Meta" && k.Value != "Parsed") || (v.kind != "" && (v.kind != k.Value || v.name != p.Value)) {
			v.other = true
			return
		}
		v.kind, v.name = k.Value, p.Value
		v.fields++
	}
}
