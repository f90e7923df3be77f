package exprenv

import (
	"fmt"
	"reflect"
	"regexp"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
)

// pureHelpers are the helpers whose result depends on their arguments
// alone: a call of one over constants is the same value for every event,
// so a load computes it once. Helpers that read data files, the stash, the
// host or the clock, or that write into their arguments, are not here.
var pureHelpers = map[string]bool{
	"Lower": true, "Upper": true, "TrimSpace": true,
	"TrimPrefix": true, "TrimSuffix": true, "Trim": true, "TrimLeft": true, "TrimRight": true,
	"Sprintf": true, "ToString": true, "Atof": true,
	"QueryUnescape": true, "PathUnescape": true, "PathEscape": true, "QueryEscape": true,
	"IsIP": true, "IsIPV4": true, "IsIPV6": true, "IpInRange": true, "IpToRange": true,
	"Match": true, "JsonExtract": true, "JsonExtractUnescape": true,
	"XMLGetNodeValue": true, "XMLGetAttributeValue": true, "ParseUnix": true,
}

// dynMatch is the helper a `matches` whose pattern is computed per event
// becomes, so that pattern is compiled once through the Env's bounded
// cache instead of on every run (the VM's own operator compiles each time).
const dynMatch = "moatDynamicMatch"

// Dynamic is an expression that still does, per event, work a load could
// have done, and why.
type Dynamic struct {
	Expr   string `json:"expr"`
	Reason string `json:"reason"`
}

// Dynamic lists the compiled expressions that still do per-event work a
// load could have done (patterns computed per event, helpers that failed
// on constant arguments), in compile order.
func (e *Env) Dynamic() []Dynamic {
	e.dynMu.Lock()
	defer e.dynMu.Unlock()
	return append([]Dynamic(nil), e.dyn...)
}

func (e *Env) noteDynamic(src, reason string) {
	e.dynMu.Lock()
	defer e.dynMu.Unlock()
	d := Dynamic{Expr: src, Reason: reason}
	if e.dynSeen == nil {
		e.dynSeen = map[Dynamic]bool{}
	}
	if !e.dynSeen[d] {
		e.dynSeen[d] = true
		e.dyn = append(e.dyn, d)
	}
}

// helperFuncs is the helper table as expr holds it, for calls at load.
func (e *Env) helperFuncs() map[string]*builtin.Function {
	e.fnOnce.Do(func() {
		c := conf.CreateNew()
		for _, op := range e.opts {
			op(c)
		}
		e.fns = c.Functions
	})
	return e.fns
}

// folder is the load-time pass over an expression's tree: it replaces
// calls of pure helpers over constants with their value and, when
// rewrite is set, turns `matches` over a computed pattern into a cached
// match. ast.Walk visits children first, so nested calls fold inward out.
type folder struct {
	fns     map[string]*builtin.Function
	rewrite bool
	note    func(reason string)
}

func (e *Env) newFolder(src string, rewrite bool) *folder {
	return &folder{fns: e.helperFuncs(), rewrite: rewrite, note: func(r string) { e.noteDynamic(src, r) }}
}

func (f *folder) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.CallNode:
		f.call(n, x)
	case *ast.BinaryNode:
		switch x.Operator {
		case "+":
			l, lok := x.Left.(*ast.StringNode)
			r, rok := x.Right.(*ast.StringNode)
			if lok && rok {
				ast.Patch(n, &ast.StringNode{Value: l.Value + r.Value})
			}
		case "matches":
			f.matches(n, x)
		}
	}
}

func (f *folder) call(n *ast.Node, x *ast.CallNode) {
	id, ok := x.Callee.(*ast.IdentifierNode)
	// expr forbids a let to redeclare a function: a call of a helper's
	// name is that helper.
	if !ok {
		return
	}
	if id.Value == "RegexpMatch" && len(x.Arguments) == 2 && f.rewrite {
		if _, ok := x.Arguments[0].(*ast.StringNode); !ok {
			f.note("RegexpMatch over a pattern computed per event: compiled once per distinct pattern through a bounded cache")
		}
	}
	if !pureHelpers[id.Value] {
		return
	}
	fn := f.fns[id.Value]
	if fn == nil || fn.Func == nil {
		return
	}
	args := make([]any, len(x.Arguments))
	for i, a := range x.Arguments {
		v, ok := constValue(a)
		if !ok {
			return
		}
		args[i] = v
	}
	out, err := callPure(fn.Func, args)
	if err != nil {
		f.note(fmt.Sprintf("%s over constants fails at every event: %v", id.Value, err))
		return
	}
	if c, ok := constNode(out); ok {
		ast.Patch(n, c)
	}
}

// callPure calls a helper at load; a helper that panics on these
// arguments is left for the VM, which reports it the same way per event.
func callPure(fn func(...any) (any, error), args []any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(args...)
}

func constValue(n ast.Node) (any, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.IntegerNode:
		return x.Value, true
	case *ast.FloatNode:
		return x.Value, true
	case *ast.BoolNode:
		return x.Value, true
	case *ast.NilNode:
		return nil, true
	}
	return nil, false
}

func constNode(v any) (ast.Node, bool) {
	switch x := v.(type) {
	case string:
		return &ast.StringNode{Value: x}, true
	case bool:
		return &ast.BoolNode{Value: x}, true
	case int:
		return &ast.IntegerNode{Value: x}, true
	case float64:
		return &ast.FloatNode{Value: x}, true
	}
	return nil, false
}

var stringType = reflect.TypeOf("")

func (f *folder) matches(n *ast.Node, x *ast.BinaryNode) {
	if _, ok := x.Right.(*ast.StringNode); ok {
		return // expr compiles a literal pattern once
	}
	if !f.rewrite {
		return
	}
	// Only operands the operator itself accepts: anything else keeps
	// failing the type check as it did.
	for _, side := range []ast.Node{x.Left, x.Right} {
		if _, isNil := side.(*ast.NilNode); isNil {
			return
		}
		t := side.Type()
		if t == nil || (t != stringType && t.Kind() != reflect.Interface) {
			return
		}
	}
	f.note("matches over a pattern computed per event: compiled once per distinct pattern through a bounded cache")
	ast.Patch(n, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: dynMatch},
		Arguments: []ast.Node{x.Left, x.Right},
	})
}

// dynMatchHelper is `matches` as the VM runs it (nil on either side is
// false, a bad pattern is an error), over the Env's cache.
func (e *Env) dynMatchHelper() expr.Option {
	return expr.Function(dynMatch, func(p ...any) (any, error) {
		if err := arity("matches", p, 2); err != nil {
			return nil, err
		}
		if p[0] == nil || p[1] == nil {
			return false, nil
		}
		pat, ok := p[1].(string)
		if !ok {
			return nil, fmt.Errorf("matches: pattern is %T, want string", p[1])
		}
		re, err := e.res.get(pat)
		if err != nil {
			return nil, err
		}
		switch s := p[0].(type) {
		case string:
			return re.MatchString(s), nil
		case []byte:
			return re.Match(s), nil
		}
		return nil, fmt.Errorf("matches: operand is %T, want string", p[0])
	}, new(func(any, any) bool))
}

// Bounds of the cache of patterns computed per event. A hub expression
// can make attacker text a pattern; the cache then holds at most
// reCacheMax of them, and none longer than rePatternMax (those compile
// at each use, as they would anyway).
const (
	reCacheMax   = 1024
	rePatternMax = 4096
)

type reResult struct {
	re  *regexp.Regexp
	err error
}

// reCache keeps compiled patterns in two generations: a hit in the old
// one moves to the new one, and when the new one is full the old one is
// dropped, so what is in use stays and the size never exceeds max (an
// approximate LRU without a list to maintain on every hit).
type reCache struct {
	mu       sync.RWMutex
	cur, old map[string]reResult
	max      int
	compiles uint64
}

func newReCache(max int) *reCache {
	return &reCache{cur: map[string]reResult{}, max: max}
}

func (c *reCache) get(pat string) (*regexp.Regexp, error) {
	if len(pat) > rePatternMax {
		re, err := regexp.Compile(pat)
		c.mu.Lock()
		c.compiles++
		c.mu.Unlock()
		return re, err
	}
	c.mu.RLock()
	r, ok := c.cur[pat]
	c.mu.RUnlock()
	if ok {
		return r.re, r.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cur[pat]; ok {
		return r.re, r.err
	}
	r, ok = c.old[pat]
	if ok {
		delete(c.old, pat)
	} else {
		r.re, r.err = regexp.Compile(pat)
		c.compiles++
	}
	if len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[string]reResult, c.max/2)
	}
	c.cur[pat] = r
	return r.re, r.err
}

// size is the number of patterns held, and compiled the compilations done.
func (c *reCache) size() (held int, compiled uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.old), c.compiles
}

// patternMatcher is any(File(f), {X matches T(#)}): every line of the data
// file compiled once, at first use, instead of each line at each event.
type patternMatcher struct {
	res []*regexp.Regexp
	pre *regexpPrefilter
}

// badPatterns stands for a data file with a line that is not a regexp:
// the VM runs the loop and fails as it always did.
type badPatterns struct{}

func (badPatterns) match(string) bool { return false }

func newPatternMatcher(lits []string) matcher {
	res := make([]*regexp.Regexp, 0, len(lits))
	for _, l := range lits {
		re, err := regexp.Compile(l)
		if err != nil {
			return badPatterns{}
		}
		res = append(res, re)
	}
	return &patternMatcher{res: res, pre: newRegexpPrefilter(res)}
}

func (m *patternMatcher) match(s string) bool {
	res := m.res
	if m.pre != nil {
		res = m.pre.candidates(s, res)
	}
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
