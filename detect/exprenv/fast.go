package exprenv

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/moatsec/moat/detect"
)

// Program is an expression over evt compiled twice: for the expr VM, and
// into Go closures for the shapes hub filters are made of (field tests,
// string operators, folds, data-file lists). The closures evaluate what
// they can without side effects; whatever they cannot decide (method
// calls, helpers they do not know, type juggling) goes to the VM, which
// stays the reference.
type Program struct {
	VM     *vm.Program
	native nfn
	kind   kind
	nvars  int
	// sole is the one field the expression is a pure function of, when
	// soleOK (see SoleField).
	sole   Field
	soleOK bool
}

type kind uint8

const (
	kNone kind = iota
	kStr
	kBool
)

type val struct {
	s string
	b bool
}

// nfn evaluates a node; false means undecided (the VM must run).
type nfn func(c *fctx) (val, bool)

type fctx struct {
	evt  *detect.Event
	memo *Memo
	vars []val
}

// Memo caches what closures computed on one event (field reads, folds
// such as Upper(evt.Meta.http_path), tests such as evt.Meta.log_type in
// [...]) across the programs that run on it: scenarios share most of
// their filters' terms. Reset it whenever the event may have changed.
// Not safe for concurrent use.
type Memo struct {
	gen   uint32
	stamp []uint32
	vals  []val
	vars  []val
	ctx   fctx // reused by every evaluation, so none allocates
	// uppers and lowers cache Upper and Lower of field values across
	// events: probes repeat the same paths and agents.
	uppers, lowers map[string]string
	files          map[fileKey]val
}

// fileKey names a data-file verdict: RegexpInFile (regexp) or
// LookupFile of s in file.
type fileKey struct {
	file, s string
	regexp  bool
}

// fileVerdict is the verdict of k, from the memo's cache or else from
// get, whose caches are the Env's: shared by every worker, and locked.
func (m *Memo) fileVerdict(k fileKey, get func() val) val {
	if v, ok := m.files[k]; ok {
		return v
	}
	v := get()
	if m.files == nil || len(m.files) >= reHitsMax {
		m.files = make(map[fileKey]val)
	}
	m.files[k] = v
	return v
}

// fold is Upper (upper) or Lower of s, cached.
func (m *Memo) fold(upper bool, s string) string {
	cache, f := &m.lowers, strings.ToLower
	if upper {
		cache, f = &m.uppers, strings.ToUpper
	}
	return cachedFold(cache, s, f)
}

// cachedFold is f(s), kept in cache (bounded by foldCacheMax).
func cachedFold(cache *map[string]string, s string, f func(string) string) string {
	if v, ok := (*cache)[s]; ok {
		return v
	}
	v := f(s)
	if *cache == nil || len(*cache) >= foldCacheMax {
		*cache = make(map[string]string)
	}
	(*cache)[s] = v
	return v
}

// Reset forgets every cached fold.
func (m *Memo) Reset() {
	m.gen++
	if m.gen == 0 {
		clear(m.stamp)
		m.gen = 1
	}
}

func (m *Memo) get(slot int) (val, bool) {
	if slot < len(m.stamp) && m.stamp[slot] == m.gen && m.gen != 0 {
		return m.vals[slot], true
	}
	return val{}, false
}

func (m *Memo) put(slot int, v val) {
	if slot >= len(m.stamp) {
		n := slot + 16
		m.stamp = append(m.stamp, make([]uint32, n-len(m.stamp))...)
		m.vals = append(m.vals, make([]val, n-len(m.vals))...)
	}
	if m.gen == 0 {
		m.gen = 1
	}
	m.stamp[slot] = m.gen
	m.vals[slot] = v
}

// CompileEvt compiles src for the VM over vars (which must hold "evt")
// and, where it can, into closures.
func (e *Env) CompileEvt(src string, vars map[string]any) (*Program, error) {
	p, err := e.Compile(src, vars)
	if err != nil {
		return nil, err
	}
	prog := &Program{VM: p}
	tree, err := parser.Parse(src)
	if err != nil {
		return prog, nil
	}
	prog.sole, _, prog.soleOK = SoleField(tree.Node)
	ast.Walk(&tree.Node, e.newFolder(src, false))
	c := &fcomp{e: e, scope: map[string]int{}}
	fn, k := c.node(tree.Node)
	if k != kNone {
		prog.native, prog.kind, prog.nvars = fn, k, c.nvars
	}
	return prog, nil
}

// SoleField returns the one event field the expression is a pure
// function of (see the function SoleField); ok is false when it reads
// anything else.
func (p *Program) SoleField() (f Field, ok bool) { return p.sole, p.soleOK }

// Native reports whether some of the program runs without the VM.
func (p *Program) Native() bool { return p.native != nil }

func (p *Program) eval(m *Memo, evt *detect.Event) (val, bool) {
	if p.native == nil || evt == nil || m == nil {
		return val{}, false
	}
	if cap(m.vars) < p.nvars {
		m.vars = make([]val, p.nvars)
	}
	c := &m.ctx
	c.evt, c.memo, c.vars = evt, m, m.vars[:p.nvars]
	v, ok := p.native(c)
	c.evt = nil
	return v, ok
}

// Bool evaluates p natively; decided is false when the VM must run.
func (p *Program) Bool(m *Memo, evt *detect.Event) (result, decided bool) {
	if p.kind != kBool {
		return false, false
	}
	v, ok := p.eval(m, evt)
	return v.b, ok
}

// String evaluates p natively; decided is false when the VM must run.
func (p *Program) String(m *Memo, evt *detect.Event) (result string, decided bool) {
	if p.kind != kStr {
		return "", false
	}
	v, ok := p.eval(m, evt)
	return v.s, ok
}

func undecided(*fctx) (val, bool) { return val{}, false }

type fcomp struct {
	e       *Env
	keys    map[ast.Node]string
	scope   map[string]int
	nvars   int
	varKind []kind
}

func memberPath(n *ast.MemberNode) ([]string, bool) {
	var rev []string
	var cur ast.Node = n
	for {
		switch x := cur.(type) {
		case *ast.MemberNode:
			if x.Method {
				return nil, false
			}
			s, ok := x.Property.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			rev = append(rev, s.Value)
			cur = x.Node
		case *ast.ChainNode:
			cur = x.Node
		case *ast.IdentifierNode:
			rev = append(rev, x.Value)
			out := make([]string, len(rev))
			for i := range rev {
				out[i] = rev[len(rev)-1-i]
			}
			return out, true
		default:
			return nil, false
		}
	}
}

// strFuncs are the pure one-string helpers the closures run themselves;
// Upper and Lower go through the Env's folds like the VM's helpers.
var strFuncs = map[string]func(e *Env, s string) string{
	"Upper":     func(e *Env, s string) string { return strings.ToUpper(s) },
	"Lower":     func(e *Env, s string) string { return strings.ToLower(s) },
	"TrimSpace": func(_ *Env, s string) string { return strings.TrimSpace(s) },
	"QueryUnescape": func(_ *Env, s string) string {
		u, err := url.QueryUnescape(s)
		if err != nil {
			return s
		}
		return u
	},
	"PathUnescape": func(_ *Env, s string) string {
		u, err := url.PathUnescape(s)
		if err != nil {
			return s
		}
		return u
	},
}

// memoize keeps a node's value in the event's Memo under the node's
// text, so equal terms of different programs are computed once per event.
// Terms under a let may name its variable and are not kept.
func (c *fcomp) memoize(n ast.Node) func(nfn, kind) (nfn, kind) {
	return func(fn nfn, k kind) (nfn, kind) {
		if k == kNone || len(c.scope) > 0 {
			return fn, k
		}
		slot, shared := c.e.memoSlot(c.key(n))
		return func(f *fctx) (val, bool) {
			// A term only one program holds is not worth keeping.
			if !shared.Load() {
				return fn(f)
			}
			if v, ok := f.memo.get(slot); ok {
				return v, true
			}
			v, ok := fn(f)
			if ok {
				f.memo.put(slot, v)
			}
			return v, ok
		}, k
	}
}

// key is the text of n that memo slots are numbered by. ast's String
// prints a subtree again at every level above it: a filter that is a
// chain of hundreds of "or" cost seconds to load. Binary nodes are
// printed from their operands' cached keys instead.
func (c *fcomp) key(n ast.Node) string {
	if k, ok := c.keys[n]; ok {
		return k
	}
	var k string
	if b, ok := n.(*ast.BinaryNode); ok {
		k = "(" + c.key(b.Left) + " " + b.Operator + " " + c.key(b.Right) + ")"
	} else {
		k = n.String()
	}
	if c.keys == nil {
		c.keys = map[ast.Node]string{}
	}
	c.keys[n] = k
	return k
}

func constStr(s string) nfn { return func(*fctx) (val, bool) { return val{s: s}, true } }

func (c *fcomp) node(n ast.Node) (nfn, kind) {
	switch x := n.(type) {
	case *ast.StringNode:
		return constStr(x.Value), kStr
	case *ast.BoolNode:
		b := x.Value
		return func(*fctx) (val, bool) { return val{b: b}, true }, kBool
	case *ast.ChainNode:
		return c.node(x.Node)
	case *ast.IdentifierNode:
		if i, ok := c.scope[x.Value]; ok {
			return func(f *fctx) (val, bool) { return f.vars[i], true }, c.varKind[i]
		}
	case *ast.MemberNode:
		return c.memoize(x)(c.member(x))
	case *ast.UnaryNode:
		if x.Operator == "!" || x.Operator == "not" {
			fn, k := c.node(x.Node)
			if k != kBool {
				return nil, kNone
			}
			return func(f *fctx) (val, bool) {
				v, ok := fn(f)
				return val{b: !v.b}, ok
			}, kBool
		}
	case *ast.BinaryNode:
		return c.memoize(x)(c.binary(x))
	case *ast.CallNode:
		return c.memoize(x)(c.call(x))
	case *ast.BuiltinNode:
		return c.memoize(x)(c.builtin(x))
	case *ast.ConditionalNode:
		cond, ck := c.node(x.Cond)
		if ck != kBool {
			return nil, kNone
		}
		a, ak := c.node(x.Exp1)
		b, bk := c.node(x.Exp2)
		k := ak
		if k == kNone {
			k = bk
		}
		if k == kNone || (bk != kNone && bk != k) {
			return nil, kNone
		}
		if ak == kNone {
			a = undecided
		}
		if bk == kNone {
			b = undecided
		}
		return func(f *fctx) (val, bool) {
			v, ok := cond(f)
			if !ok {
				return val{}, false
			}
			if v.b {
				return a(f)
			}
			return b(f)
		}, k
	case *ast.VariableDeclaratorNode:
		vfn, vk := c.node(x.Value)
		if vk == kNone {
			return nil, kNone
		}
		i := c.nvars
		c.nvars++
		c.varKind = append(c.varKind, vk)
		old, had := c.scope[x.Name]
		c.scope[x.Name] = i
		body, bk := c.node(x.Expr)
		if had {
			c.scope[x.Name] = old
		} else {
			delete(c.scope, x.Name)
		}
		if bk == kNone {
			return nil, kNone
		}
		return func(f *fctx) (val, bool) {
			v, ok := vfn(f)
			if !ok {
				return val{}, false
			}
			f.vars[i] = v
			return body(f)
		}, bk
	}
	return nil, kNone
}

func (c *fcomp) member(x *ast.MemberNode) (nfn, kind) {
	p, ok := memberPath(x)
	if !ok || len(p) < 2 || p[0] != "evt" {
		return nil, kNone
	}
	if _, shadowed := c.scope["evt"]; shadowed {
		return nil, kNone
	}
	mapField := func(get func(e *detect.Event) map[string]string, key string) (nfn, kind) {
		return func(f *fctx) (val, bool) { return val{s: get(f.evt)[key]}, true }, kStr
	}
	strField := func(get func(e *detect.Event) string) (nfn, kind) {
		return func(f *fctx) (val, bool) { return val{s: get(f.evt)}, true }, kStr
	}
	switch len(p) {
	case 2:
		switch p[1] {
		case "StrTime":
			return strField(func(e *detect.Event) string { return e.StrTime })
		case "Stage":
			return strField(func(e *detect.Event) string { return e.Stage })
		case "Whitelisted":
			return func(f *fctx) (val, bool) { return val{b: f.evt.Whitelisted}, true }, kBool
		}
	case 3:
		switch p[1] {
		case "Meta":
			return mapField(func(e *detect.Event) map[string]string { return e.Meta }, p[2])
		case "Parsed":
			return mapField(func(e *detect.Event) map[string]string { return e.Parsed }, p[2])
		case "Enriched":
			return mapField(func(e *detect.Event) map[string]string { return e.Enriched }, p[2])
		case "Line":
			switch p[2] {
			case "Raw":
				return strField(func(e *detect.Event) string { return e.Line.Raw })
			case "Src":
				return strField(func(e *detect.Event) string { return e.Line.Src })
			case "Module":
				return strField(func(e *detect.Event) string { return e.Line.Module })
			}
		}
	case 4:
		if p[1] == "Line" && p[2] == "Labels" {
			return mapField(func(e *detect.Event) map[string]string { return e.Line.Labels }, p[3])
		}
	}
	return nil, kNone
}

func (c *fcomp) binary(x *ast.BinaryNode) (nfn, kind) {
	switch x.Operator {
	case "&&", "and", "||", "or":
		l, lk := c.node(x.Left)
		r, rk := c.node(x.Right)
		if (lk != kBool && lk != kNone) || (rk != kBool && rk != kNone) {
			return nil, kNone
		}
		if lk == kNone {
			l = undecided
		}
		if rk == kNone {
			r = undecided
		}
		if x.Operator == "&&" || x.Operator == "and" {
			return func(f *fctx) (val, bool) {
				v, ok := l(f)
				if !ok || !v.b {
					return v, ok
				}
				return r(f)
			}, kBool
		}
		return func(f *fctx) (val, bool) {
			v, ok := l(f)
			if !ok || v.b {
				return v, ok
			}
			return r(f)
		}, kBool
	case "in":
		arr, ok := x.Right.(*ast.ArrayNode)
		if !ok {
			return nil, kNone
		}
		set := make(map[string]struct{}, len(arr.Nodes))
		for _, n := range arr.Nodes {
			s, ok := n.(*ast.StringNode)
			if !ok {
				return nil, kNone
			}
			set[s.Value] = struct{}{}
		}
		l, lk := c.node(x.Left)
		if lk != kStr {
			return nil, kNone
		}
		return func(f *fctx) (val, bool) {
			v, ok := l(f)
			if !ok {
				return val{}, false
			}
			_, in := set[v.s]
			return val{b: in}, true
		}, kBool
	case "matches":
		l, lk := c.node(x.Left)
		if lk != kStr {
			return nil, kNone
		}
		pat, ok := ConstString(x.Right)
		if !ok {
			return nil, kNone
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, kNone
		}
		return func(f *fctx) (val, bool) {
			v, ok := l(f)
			if !ok {
				return val{}, false
			}
			return val{b: re.MatchString(v.s)}, true
		}, kBool
	}
	l, lk := c.node(x.Left)
	r, rk := c.node(x.Right)
	if lk == kNone || lk != rk {
		return nil, kNone
	}
	if lk == kBool {
		if x.Operator != "==" && x.Operator != "!=" {
			return nil, kNone
		}
		neq := x.Operator == "!="
		return func(f *fctx) (val, bool) {
			a, ok := l(f)
			if !ok {
				return val{}, false
			}
			b, ok := r(f)
			if !ok {
				return val{}, false
			}
			return val{b: (a.b == b.b) != neq}, true
		}, kBool
	}
	var op func(a, b string) bool
	switch x.Operator {
	case "==":
		op = func(a, b string) bool { return a == b }
	case "!=":
		op = func(a, b string) bool { return a != b }
	case "contains":
		op = strings.Contains
	case "startsWith":
		op = strings.HasPrefix
	case "endsWith":
		op = strings.HasSuffix
	case "+":
		return func(f *fctx) (val, bool) {
			a, ok := l(f)
			if !ok {
				return val{}, false
			}
			b, ok := r(f)
			if !ok {
				return val{}, false
			}
			return val{s: a.s + b.s}, true
		}, kStr
	default:
		return nil, kNone
	}
	return func(f *fctx) (val, bool) {
		a, ok := l(f)
		if !ok {
			return val{}, false
		}
		b, ok := r(f)
		if !ok {
			return val{}, false
		}
		return val{b: op(a.s, b.s)}, true
	}, kBool
}

// ConstString folds a string literal, or a pure one-string helper
// (Upper, Lower, TrimSpace, QueryUnescape, ...) over one.
func ConstString(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || len(x.Arguments) != 1 {
			return "", false
		}
		f := strFuncs[id.Value]
		if f == nil {
			return "", false
		}
		s, ok := ConstString(x.Arguments[0])
		if !ok {
			return "", false
		}
		return f(nil, s), true
	}
	return "", false
}

func (c *fcomp) call(x *ast.CallNode) (nfn, kind) {
	id, ok := x.Callee.(*ast.IdentifierNode)
	if !ok {
		return nil, kNone
	}
	if _, shadowed := c.scope[id.Value]; shadowed {
		return nil, kNone
	}
	if s, ok := ConstString(x); ok {
		return constStr(s), kStr
	}
	switch id.Value {
	case "RegexpInFile", "LookupFile":
		if len(x.Arguments) != 2 {
			return nil, kNone
		}
		file, ok := ConstString(x.Arguments[1])
		if !ok {
			return nil, kNone
		}
		a, ak := c.node(x.Arguments[0])
		if ak != kStr {
			return nil, kNone
		}
		e := c.e
		if id.Value == "RegexpInFile" {
			return func(f *fctx) (val, bool) {
				v, ok := a(f)
				if !ok {
					return val{}, false
				}
				return f.memo.fileVerdict(fileKey{file: file, s: v.s, regexp: true}, func() val {
					return val{b: e.regexpInFile(v.s, file)}
				}), true
			}, kBool
		}
		return func(f *fctx) (val, bool) {
			v, ok := a(f)
			if !ok {
				return val{}, false
			}
			return f.memo.fileVerdict(fileKey{file: file, s: v.s}, func() val {
				return val{s: e.lookupFile(v.s, file)}
			}), true
		}, kStr
	}
	fold := strFuncs[id.Value]
	if fold == nil || len(x.Arguments) != 1 {
		return nil, kNone
	}
	a, ak := c.node(x.Arguments[0])
	if ak != kStr {
		return nil, kNone
	}
	e := c.e
	switch id.Value {
	case "Upper", "Lower":
		// The memo's own fold cache: the Env's is shared by every
		// worker, and its lock cost more than the folding it saves.
		upper := id.Value == "Upper"
		return func(f *fctx) (val, bool) {
			v, ok := a(f)
			if !ok {
				return val{}, false
			}
			return val{s: f.memo.fold(upper, v.s)}, true
		}, kStr
	}
	return func(f *fctx) (val, bool) {
		v, ok := a(f)
		if !ok {
			return val{}, false
		}
		return val{s: fold(e, v.s)}, true
	}, kStr
}

// FileTest is a test of a term against every line of a data file, as
// hub filters write it: any(File(File), {X Op Fold(#)}).
type FileTest struct {
	File, Op string
	X        ast.Node
	// Fold is what each line is made first: "", "Upper", "Lower" or
	// "json:PATH" (JsonExtract(#, PATH)).
	Fold string
	// Guarded is {test ? action : false}: an action, not part of the
	// test, runs for a line that passes it.
	Guarded bool
}

// ReadFileTest recognises a FileTest.
func ReadFileTest(x *ast.BuiltinNode) (FileTest, bool) {
	if x.Name != "any" || len(x.Arguments) != 2 {
		return FileTest{}, false
	}
	call, ok := x.Arguments[0].(*ast.CallNode)
	if !ok || len(call.Arguments) != 1 {
		return FileTest{}, false
	}
	if id, ok := call.Callee.(*ast.IdentifierNode); !ok || id.Value != "File" {
		return FileTest{}, false
	}
	file, ok := ConstString(call.Arguments[0])
	if !ok {
		return FileTest{}, false
	}
	pred, ok := x.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return FileTest{}, false
	}
	// {cond ? action : false}: when cond holds for no line the result is
	// false without running the action.
	ft := FileTest{File: file}
	body := pred.Node
	if cn, ok := body.(*ast.ConditionalNode); ok {
		if f, ok := cn.Exp2.(*ast.BoolNode); !ok || f.Value {
			return FileTest{}, false
		}
		body, ft.Guarded = cn.Cond, true
	}
	b, ok := body.(*ast.BinaryNode)
	if !ok {
		return FileTest{}, false
	}
	ft.X, ft.Op = b.Left, b.Operator
	if f, ok := hashFold(b.Right); ok {
		ft.Fold = f
	} else if f, ok := hashFold(b.Left); ok && b.Operator == "==" {
		ft.Fold, ft.X = f, b.Right
	} else {
		return FileTest{}, false
	}
	if usesPointer(ft.X) {
		return FileTest{}, false
	}
	switch ft.Op {
	case "contains", "==", "startsWith", "endsWith", "matches":
		return ft, true
	}
	return FileTest{}, false
}

// FileTestLines are the lines of ft's data file as its Fold makes them,
// and whether the file is loaded.
func (e *Env) FileTestLines(ft FileTest) ([]string, bool) {
	lines, ok := e.Strings(ft.File)
	if !ok {
		return nil, false
	}
	return foldLines(lines, ft.Fold), true
}

// builtin handles a FileTest: one matcher over the data file's lines
// instead of a VM loop.
func (c *fcomp) builtin(x *ast.BuiltinNode) (nfn, kind) {
	ft, ok := ReadFileTest(x)
	if !ok {
		return nil, kNone
	}
	guarded := ft.Guarded
	a, ak := c.node(ft.X)
	if ak != kStr {
		return nil, kNone
	}
	m := c.e.listMatcher(ft.File, ft.Fold, ft.Op)
	return func(f *fctx) (val, bool) {
		v, ok := a(f)
		if !ok {
			return val{}, false
		}
		mm := m.get()
		if _, bad := mm.(badPatterns); bad {
			return val{}, false
		}
		hit := mm.match(v.s)
		if guarded && hit {
			return val{}, false
		}
		return val{b: hit}, true
	}, kBool
}

// hashFold recognises #, Upper(#), Lower(#) and JsonExtract(#, "path").
func hashFold(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.PointerNode:
		return "", x.Name == ""
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || len(x.Arguments) == 0 {
			return "", false
		}
		if p, ok := x.Arguments[0].(*ast.PointerNode); !ok || p.Name != "" {
			return "", false
		}
		switch {
		case len(x.Arguments) == 1 && (id.Value == "Upper" || id.Value == "Lower"):
			return id.Value, true
		case len(x.Arguments) == 2 && id.Value == "JsonExtract":
			if s, ok := x.Arguments[1].(*ast.StringNode); ok {
				return "json:" + s.Value, true
			}
		}
	}
	return "", false
}

type pointerFinder struct{ found bool }

func (p *pointerFinder) Visit(n *ast.Node) {
	if _, ok := (*n).(*ast.PointerNode); ok {
		p.found = true
	}
}

func usesPointer(n ast.Node) bool {
	var v pointerFinder
	ast.Walk(&n, &v)
	return v.found
}

type matcher interface{ match(string) bool }

type setMatcher map[string]struct{}

func (m setMatcher) match(s string) bool { _, ok := m[s]; return ok }

// lazyMatcher is built on first use, when every data file is loaded.
type lazyMatcher struct {
	once  sync.Once
	build func() matcher
	m     matcher
}

func (l *lazyMatcher) get() matcher {
	l.once.Do(func() { l.m = l.build() })
	return l.m
}

// foldLines makes each of lines what a FileTest's fold does.
func foldLines(lines []string, fold string) []string {
	switch {
	case fold == "Upper":
		return foldAll(lines, strings.ToUpper)
	case fold == "Lower":
		return foldAll(lines, strings.ToLower)
	case strings.HasPrefix(fold, "json:"):
		path := strings.TrimPrefix(fold, "json:")
		return foldAll(lines, func(l string) string { return jsonExtractRaw(l, path) })
	}
	return lines
}

func (e *Env) listMatcher(file, fold, op string) *lazyMatcher {
	key := fmt.Sprintf("%s\x00%s\x00%s", file, fold, op)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.matchers == nil {
		e.matchers = map[string]*lazyMatcher{}
	}
	if m, ok := e.matchers[key]; ok {
		return m
	}
	m := &lazyMatcher{build: func() matcher {
		e.mu.RLock()
		lits := foldLines(e.strs[file], fold)
		e.mu.RUnlock()
		switch op {
		case "matches":
			return newPatternMatcher(lits)
		case "contains":
			return newACMatcher(lits)
		case "startsWith":
			return newAffixMatcher(lits, false)
		case "endsWith":
			return newAffixMatcher(lits, true)
		}
		set := make(setMatcher, len(lits))
		for _, l := range lits {
			set[l] = struct{}{}
		}
		return set
	}}
	e.matchers[key] = m
	return m
}

// memoSlot numbers a memoizable term; shared turns true once a second
// compiled term has the same text.
func (e *Env) memoSlot(key string) (slot int, shared *atomic.Bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.slots == nil {
		e.slots = map[string]int{}
	}
	if i, ok := e.slots[key]; ok {
		e.slotShared[i].Store(true)
		return i, e.slotShared[i]
	}
	i := len(e.slots)
	e.slots[key] = i
	e.slotShared = append(e.slotShared, new(atomic.Bool))
	return i, e.slotShared[i]
}

// lookupFile is LookupFile: the tag of the first entry of a map data file
// that matches s. Verdicts are cached per file and input (probes repeat
// the same paths; a file holds hundreds of entries, some regexps).
func (e *Env) lookupFile(s, file string) string {
	e.mu.RLock()
	tag, hit := e.lookupHits[file][s]
	ents := e.lookups[file]
	e.mu.RUnlock()
	if hit {
		return tag
	}
	tag = ""
	for i := range ents {
		if ents[i].match(s) {
			tag = ents[i].Tag
			break
		}
	}
	e.mu.Lock()
	m := e.lookupHits[file]
	if m == nil || len(m) >= reHitsMax {
		m = make(map[string]string)
		if e.lookupHits == nil {
			e.lookupHits = map[string]map[string]string{}
		}
		e.lookupHits[file] = m
	}
	m[s] = tag
	e.mu.Unlock()
	return tag
}
