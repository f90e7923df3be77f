// Package alertctx loads CrowdSec hub alert context files
// (contexts/<author>/<name>.yaml, `context: {key: [expression, ...]}`) and
// evaluates them over the events of a bucket overflow, so that an alert
// keeps what an admin needs to judge it (the URIs asked, the users tried)
// without the logs. Values come from log lines an attacker writes: they
// are deduplicated and bounded in number and length.
package alertctx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/internal/yamlerr"
)

// Bounds on what an alert keeps. Keys come from the context files (the
// admin's); values come from log lines (an attacker's).
const (
	// MaxValues is how many distinct values a key keeps; later ones are
	// dropped. A brute force trying ten thousand user names still says
	// which it tried first.
	MaxValues = 20
	// MaxValueLen bounds one value in bytes; a longer one is cut on a
	// rune boundary and ends with "…".
	MaxValueLen = 512
	// MaxKeys bounds the keys of all context files together.
	MaxKeys = 64
	// MaxEvents is how many of an overflow's events are read, the newest:
	// a counter's unbounded queue can hold thousands, and the alert has
	// room for MaxValues per key anyway.
	MaxEvents = 256
)

// LoadError is a problem at a line of a context file.
type LoadError struct {
	File string
	Line int
	Err  error
}

func (e *LoadError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LoadError) Unwrap() error { return e.Err }

// file is a context file as the hub writes it.
type file struct {
	Context map[string][]string `yaml:"context"`
}

// key is one context key: its expressions from every file naming it.
type key struct {
	name  string
	srcs  []string
	progs []*exprenv.Program
}

// Contexts are compiled context files. Eval is not safe for concurrent
// use: the scenario set calls it under its own lock.
type Contexts struct {
	env   *exprenv.Env
	keys  []key
	whole bool
	vars  map[string]any
	// memo is the closures' scratch: most context expressions read a
	// field, which they do without the VM.
	memo exprenv.Memo
	errs atomic.Uint64
}

// validKey is what a key may be: templates address it as
// .Alert.Context.name, and tables print it unquoted.
var validKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// Load compiles the context files in env. A key several files name
// takes the expressions of each, as CrowdSec merges them. No files gives
// an empty Contexts whose Eval returns nil.
func Load(files []string, env *exprenv.Env) (*Contexts, error) {
	// match and req are the AppSec engine's rule match and request,
	// which moat has not: maps that are never set, so hub contexts that
	// read them (http_extended: "req != nil ? req.Host : ''") compile and
	// give nothing.
	c := &Contexts{env: env, vars: map[string]any{"evt": (*detect.Event)(nil), "match": map[string]any(nil), "req": map[string]any(nil)}}
	byName := map[string]int{}
	for _, f := range files {
		if err := c.loadFile(f, byName); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(c.keys, func(a, b key) int { return strings.Compare(a.name, b.name) })
	return c, nil
}

func (c *Contexts) loadFile(path string, byName map[string]int) error {
	raw, err := yamlerr.ReadFile(path, yamlerr.MaxHubFile)
	if err != nil {
		return fmt.Errorf("load context %s: %w", path, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return fmt.Errorf("load context: %w", yamlerr.Wrap(path, err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("load context: %w", yamlerr.Wrap(path, err))
	}
	bad := func(err error, at ...any) error {
		return &LoadError{File: path, Line: yamlerr.LineOf(&root, at...), Err: err}
	}
	if len(f.Context) == 0 {
		return bad(errors.New("no context keys (want context: {key: [expression, ...]})"), "context")
	}
	names := make([]string, 0, len(f.Context))
	for n := range f.Context {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		at := []any{"context", n}
		if !validKey.MatchString(n) {
			return bad(fmt.Errorf("context key %s: want letters, digits, _ . - (at most 64)", yamlerr.Excerpt(n)), at...)
		}
		srcs := f.Context[n]
		if len(srcs) == 0 {
			return bad(fmt.Errorf("context key %s: no expressions", n), at...)
		}
		i, ok := byName[n]
		if !ok {
			if len(c.keys) >= MaxKeys {
				return bad(fmt.Errorf("context key %s: more than %d keys in all context files", n, MaxKeys), at...)
			}
			i = len(c.keys)
			byName[n] = i
			c.keys = append(c.keys, key{name: n})
		}
		k := &c.keys[i]
		for j, src := range srcs {
			if strings.TrimSpace(src) == "" {
				return bad(fmt.Errorf("context key %s: empty expression", n), append(at, j)...)
			}
			if slices.Contains(k.srcs, src) {
				continue // two files asking for the same value
			}
			p, err := c.env.CompileEvt(src, c.vars)
			if err != nil {
				return bad(fmt.Errorf("context key %s: %w", n, err), append(at, j)...)
			}
			k.srcs, k.progs = append(k.srcs, src), append(k.progs, p)
			c.whole = c.whole || readsMoreThanMeta(src)
		}
	}
	return nil
}

// readsMoreThanMeta reports whether an expression reads an event's parsed
// fields (or hands the whole event to a function). Buckets give back the
// parsed fields of the events they keep unless a reader needs them: most
// context expressions read evt.Meta only, and keeping Parsed for them
// would cost most of a held event's memory.
func readsMoreThanMeta(src string) bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return true
	}
	var v evtUses
	ast.Walk(&tree.Node, &v)
	return v.all != v.safe
}

// evtUses counts the uses of evt, and those that are a member other than
// Parsed (evt.Meta.x, evt.GetMeta("x"), evt.Line.Raw).
type evtUses struct{ all, safe int }

func (v *evtUses) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "evt" {
			v.all++
		}
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "evt" {
			return
		}
		if p, ok := x.Property.(*ast.StringNode); ok && p.Value != "Parsed" && p.Value != "GetParsed" {
			v.safe++
		}
	}
}

// Keys are the context keys, sorted.
func (c *Contexts) Keys() []string {
	out := make([]string, len(c.keys))
	for i, k := range c.keys {
		out[i] = k.name
	}
	return out
}

// NeedsParsed reports whether an expression reads events' parsed fields,
// which buckets must then keep.
func (c *Contexts) NeedsParsed() bool { return c != nil && c.whole }

// Errors counts expression runs that failed (a field of the wrong type,
// a nil dereference); such a run gives no value.
func (c *Contexts) Errors() uint64 {
	if c == nil {
		return 0
	}
	return c.errs.Load()
}

// Eval runs every key's expressions over events (oldest first; only the
// newest MaxEvents are read) and returns each key's distinct non-empty
// values in the order first seen, bounded by MaxValues and MaxValueLen.
// Keys without a value are left out; nil when none has one.
func (c *Contexts) Eval(events []*detect.Event) map[string][]string {
	if c == nil || len(c.keys) == 0 || len(events) == 0 {
		return nil
	}
	if len(events) > MaxEvents {
		events = events[len(events)-MaxEvents:]
	}
	var out map[string][]string
	for _, k := range c.keys {
		var vals []string
		for _, evt := range events {
			if len(vals) >= MaxValues {
				break
			}
			c.vars["evt"] = evt
			for _, p := range k.progs {
				c.memo.Reset()
				if v, ok := p.String(&c.memo, evt); ok {
					vals = appendValue(vals, v)
					continue
				}
				res, err := c.env.Run(p.VM, c.vars)
				if err != nil {
					c.errs.Add(1)
					continue
				}
				vals = appendValues(vals, res)
			}
		}
		if len(vals) > 0 {
			if out == nil {
				out = make(map[string][]string, len(c.keys))
			}
			out[k.name] = vals
		}
	}
	c.vars["evt"] = (*detect.Event)(nil)
	return out
}

// appendValues adds what an expression returned: a value, or each of a
// list's (CrowdSec's contexts may return []string).
func appendValues(vals []string, res any) []string {
	switch x := res.(type) {
	case nil:
		return vals
	case []string:
		for _, s := range x {
			vals = appendValue(vals, s)
		}
		return vals
	case []any:
		for _, s := range x {
			if s != nil {
				vals = appendValue(vals, exprenv.ToString(s))
			}
		}
		return vals
	case float64:
		return appendValue(vals, strconv.FormatFloat(x, 'f', -1, 64))
	default:
		return appendValue(vals, exprenv.ToString(res))
	}
}

// appendValue adds v, made valid UTF-8 and cut to MaxValueLen, unless it
// is empty, already there, or the key is full.
func appendValue(vals []string, v string) []string {
	if v == "" || len(vals) >= MaxValues {
		return vals
	}
	v = clip(strings.ToValidUTF8(v, "\uFFFD"), MaxValueLen)
	if slices.Contains(vals, v) {
		return vals
	}
	return append(vals, v)
}

// clip cuts s to at most n bytes, "…" included, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
