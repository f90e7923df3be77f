package grok

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moatsec/moat/detect/grok/internal/ascii"
	"github.com/moatsec/moat/detect/internal/rxlit"
)

// Pattern is a compiled grok pattern. It is safe for concurrent use.
type Pattern struct {
	lib *Library
	src string
	// tiers are the tiers the pattern has, in the order they are tried;
	// the last is always Regexp.
	tiers []Tier
	// fast is the Fast tier's matcher; ok=false passes the input on.
	fast func(s string, parsed map[string]string) (matched, ok bool)
	// full is the pattern as written.
	full variant
	// v4 is the pattern with IPV6 removed and HOSTNAME's labels
	// unbounded, or nil when it uses neither. IPV6 can only match inside
	// a run of hex digits, dots and colons that holds "::" or six colons,
	// and a label bound of 63 only matters on a run of 64 label
	// characters; on input without such runs v4 matches exactly as full
	// does, and it is many times faster (the IPV6 alternation and the 62
	// unrolled label repetitions make most of the program).
	v4 *variant
	// v6 is the pattern with IPV6 taken as any run of its characters
	// (v6Group submatches, listed in v6runs) and HOSTNAME unbounded, when
	// every such run is followed by a character it cannot hold: on input
	// without '%' the run is the only place an IPV6 match can end, so v6
	// matches as full does once each run taken is checked to be an
	// address (ip6). Lines with IPv6 addresses then avoid full's NFA.
	v6     *variant
	v6runs []int
	v6end  []bool // per run: the pattern ends with it
	ip6    *ip6Checks
	// pre is the literal every match starts with, when the pattern has
	// one and no assertion on the start of the text: a match can only
	// start at an occurrence of pre, so the anchored regexp run at each
	// occurrence finds the leftmost match without the unanchored search.
	pre string
	// lits are substrings every match contains, longest first; checked
	// before any tier.
	lits []string
}

// variant is one regexp a pattern can run as, in the Backtrack and
// Regexp tiers.
type variant struct {
	// rx is the regexp text, checked to compile when the pattern was.
	rx string
	// prog is rx for the Backtrack tier, nil when it could not compile
	// or the tier is off.
	prog *ascii.Prog
	// names[i] is the field name of submatch i ("" for unnamed groups).
	names []string
	// withAnch: the Regexp tier tries anch first.
	withAnch bool

	// The Regexp tier's programs are built on first use. Where a Fast or
	// Backtrack tier serves the pattern they are needed only for
	// non-ASCII lines and lines too long for the backtracker, and they
	// were most of the heap of a daemon loaded with the hub (4.3 of 8.8
	// MB with the built-in content).
	once sync.Once
	re   *regexp.Regexp
	// anch is re anchored at the start of the input (nil without
	// withAnch). A match there is the leftmost match, with the same
	// submatches, and most lines match their pattern from their first
	// byte: trying it first spares the unanchored search, whose NFA keeps
	// a thread alive for every start position.
	anch *regexp.Regexp
}

// newVariant checks that rx compiles as a Go regexp, without keeping the
// program, and compiles it for the Backtrack tier unless noBacktrack.
// gen names the generated groups (see fieldNames).
func newVariant(rx string, gen []string, withAnch, noBacktrack bool) (*variant, *syntax.Regexp, error) {
	// regexp.Compile fails only where syntax.Parse does.
	tree, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return nil, nil, err
	}
	v := &variant{rx: rx, names: fieldNames(tree, gen), withAnch: withAnch}
	if !noBacktrack {
		v.prog, _ = ascii.Compile(tree)
	}
	return v, tree, nil
}

// regexps returns the variant's Go regexps, compiling them on first use.
func (v *variant) regexps() (re, anch *regexp.Regexp) {
	v.once.Do(func() {
		v.re = regexp.MustCompile(v.rx) // it parsed at load
		if v.withAnch {
			v.anch = anchor(v.rx)
		}
	})
	return v.re, v.anch
}

// String returns the grok text the pattern was compiled from.
func (c *Pattern) String() string { return c.src }

// Tier returns the tier that serves the pattern first.
func (c *Pattern) Tier() Tier { return c.tiers[0] }

// Literals returns substrings every match contains (not necessarily all
// of them); Match looks for them before running anything else.
func (c *Pattern) Literals() []string { return slices.Clone(c.lits) }

// Tiers returns the tiers the pattern has, in the order they are tried.
func (c *Pattern) Tiers() []Tier { return slices.Clone(c.tiers) }

// Compile compiles grok text, or returns the pattern compiled from the
// same text since the last Add.
func (g *Library) Compile(src string) (*Pattern, error) {
	if c, ok := g.compiled[src]; ok {
		return c, nil
	}
	var gen []string
	rx, err := g.expand(src, &gen, 0, expandFull)
	if err != nil {
		return nil, err
	}
	anchored := strings.HasPrefix(src, "^")
	full, tree, err := newVariant(rx, gen, !anchored, g.opts.NoBacktrack)
	if err != nil {
		return nil, fmt.Errorf("compile grok %q: %w", src, err)
	}
	c := &Pattern{lib: g, src: src, full: variant{rx: full.rx, prog: full.prog, names: full.names, withAnch: full.withAnch}}
	if c.v4 = g.compileV4(src, rx, tree.MaxCap(), anchored); c.v4 != nil {
		c.v4.names = c.full.names
		c.compileV6(rx)
	}
	c.lits = requiredLiterals(rx)
	if !anchored && !assertsTextStart(rx) {
		c.pre = literalPrefix(tree)
	}
	c.fast = g.fastMatcher(src)
	c.tiers = c.tierList()
	g.made[c.Tier()]++
	g.compiled[src] = c
	return c, nil
}

// tierList lists the tiers c was given.
func (c *Pattern) tierList() []Tier {
	var ts []Tier
	if c.fast != nil {
		ts = append(ts, Fast)
	}
	for _, v := range []*variant{&c.full, c.v4, c.v6} {
		if v != nil && v.prog != nil {
			ts = append(ts, Backtrack)
			break
		}
	}
	return append(ts, Regexp)
}

// fastMatcher returns the hand-written matcher for src, if it has one and
// src expands in g as the matcher assumes.
func (g *Library) fastMatcher(src string) func(string, map[string]string) (bool, bool) {
	if src == "^%{SYSLOGLINE}" && g.standardSyslog() {
		return fastSyslogLine
	}
	if f := g.nginxFast(src); f != nil {
		return f
	}
	return g.httpFast(src)
}

// anchor compiles rx anchored at the start of the input, or returns nil.
func anchor(rx string) *regexp.Regexp {
	a, err := regexp.Compile("^(?:" + rx + ")")
	if err != nil {
		return nil
	}
	return a
}

// literalPrefix is the literal every match of tree starts with, as
// regexp's LiteralPrefix finds it.
func literalPrefix(tree *syntax.Regexp) string {
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return ""
	}
	p, _ := prog.Prefix()
	return p
}

// compileV4 builds the v4 variant of src (full expanded as rx, with
// nsub submatches), or nil.
func (g *Library) compileV4(src, rx string, nsub int, anchored bool) *variant {
	var gen4 []string
	rx4, err := g.expand(src, &gen4, 0, expandNoV6)
	if err != nil || rx4 == rx || !g.standardV4() {
		return nil
	}
	v, tree, err := newVariant(rx4, nil, !anchored, g.opts.NoBacktrack)
	if err != nil || tree.MaxCap() != nsub {
		return nil
	}
	return v
}

// compileV6 builds the v6 variant of c (full expanded as rx), if every
// IPv6 run of it is bounded.
func (c *Pattern) compileV6(rx string) {
	g := c.lib
	var gen6 []string
	rx6, err := g.expand(c.src, &gen6, 0, expandV6Run)
	atEnd, bounded := v6RunsBounded(rx6)
	if err != nil || rx6 == rx || !bounded {
		return
	}
	v, tree, err := newVariant(rx6, gen6, true, g.opts.NoBacktrack)
	if err != nil {
		return
	}
	ip6 := g.ip6Checks()
	if ip6 == nil {
		return
	}
	var runs []int
	for i, n := range tree.CapNames() {
		if n == v6Group {
			runs = append(runs, i)
		}
	}
	if len(runs) != len(atEnd) {
		return
	}
	c.v6, c.v6runs, c.v6end, c.ip6 = v, runs, atEnd, ip6
}

// ip6Checks are the checks of the IPv6 runs a v6 variant takes: the run
// is an address (whole), or where IPV6's preferred match ends (pre).
type ip6Checks struct{ whole, pre *tokenCheck }

// ip6Checks returns the library's IPv6 run checks, shared by its
// patterns, or nil when IPV6 does not compile.
func (g *Library) ip6Checks() *ip6Checks {
	if g.ip6 != nil {
		return g.ip6
	}
	var names []string
	ip6, err := g.expand("%{IPV6}", &names, 0, expandFull)
	if err != nil {
		return nil
	}
	if _, err := syntax.Parse(ip6, syntax.Perl); err != nil {
		return nil
	}
	g.ip6 = &ip6Checks{
		whole: newTokenCheck("^(?:"+ip6+")$", false),
		pre:   newTokenCheck("^(?:"+ip6+")", true),
	}
	return g.ip6
}

// fieldNames maps the submatches of tree to grok field names.
func fieldNames(tree *syntax.Regexp, gen []string) []string {
	names := make([]string, tree.MaxCap()+1)
	for i, n := range tree.CapNames() {
		if n == "" || n == v6Group {
			continue
		}
		if strings.HasPrefix(n, "g") {
			if k, err := strconv.Atoi(n[1:]); err == nil && k < len(gen) {
				names[i] = gen[k]
				continue
			}
		}
		names[i] = n // a raw (?<name>...) group of the pattern text
	}
	return names
}

// v6RunsBounded reports whether every v6Group capture of rx sits under no
// repetition and is followed by a literal character or class no IPv6 run
// holds ([0-9A-Fa-f:.%]) or by the end of the text (then a run can only
// be taken whole, where IPV6 too must end), or ends the pattern (atEnd:
// then nothing constrains where IPV6 ends, and the run must be where its
// preferred match ends).
func v6RunsBounded(rx string) (atEnd []bool, ok bool) {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return nil, false
	}
	ok = true
	// walk visits r knowing what follows it: rest, or nothing known when
	// repeated (what follows a repetition's body may be the body again).
	var walk func(r *syntax.Regexp, rest []*syntax.Regexp, repeated bool)
	walk = func(r *syntax.Regexp, rest []*syntax.Regexp, repeated bool) {
		if !ok {
			return
		}
		switch r.Op {
		case syntax.OpCapture:
			if r.Name == v6Group {
				end, bounded := runFollowers(rest)
				atEnd = append(atEnd, end)
				if repeated || !bounded {
					ok = false
				}
				return
			}
			walk(r.Sub[0], rest, repeated)
		case syntax.OpConcat:
			for i, sub := range r.Sub {
				walk(sub, append(slices.Clip(r.Sub[i+1:]), rest...), repeated)
			}
		case syntax.OpAlternate:
			for _, sub := range r.Sub {
				walk(sub, rest, repeated)
			}
		default:
			for _, sub := range r.Sub {
				walk(sub, nil, true)
			}
		}
	}
	walk(re, nil, false)
	return atEnd, ok && len(atEnd) > 0
}

// runFollowers tells what can come right after an IPv6 run followed by
// rest: only the end of the pattern (atEnd), or a character no run holds
// (bounded). Optional parts that start with such a character may come
// first: when the run is not all of IPV6's preferred match, the next
// character is one of the run's and they cannot match, as in the full
// pattern.
func runFollowers(rest []*syntax.Regexp) (atEnd, bounded bool) {
	for _, r := range rest {
		switch {
		case r.Op == syntax.OpEmptyMatch:
		case r.Op == syntax.OpQuest || r.Op == syntax.OpStar:
			if !stopsRun(r.Sub[0]) {
				return false, false
			}
		default:
			return false, stopsRun(r)
		}
	}
	return true, true
}

// stopsRun reports whether r must start with a character no IPv6 run
// holds, or is the end of the text.
func stopsRun(r *syntax.Regexp) bool {
	if r == nil {
		return false
	}
	inRun := func(c rune) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.' || c == '%'
	}
	switch r.Op {
	case syntax.OpEndText:
		return true
	case syntax.OpLiteral:
		if len(r.Rune) == 0 {
			return false
		}
		c := r.Rune[0]
		if r.Flags&syntax.FoldCase != 0 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
		return !inRun(c)
	case syntax.OpCharClass:
		for i := 0; i+1 < len(r.Rune); i += 2 {
			for c := r.Rune[i]; c <= r.Rune[i+1] && c < 128; c++ {
				if inRun(c) {
					return false
				}
			}
		}
		return true
	case syntax.OpCapture, syntax.OpPlus:
		return stopsRun(r.Sub[0])
	case syntax.OpConcat:
		return len(r.Sub) > 0 && stopsRun(r.Sub[0])
	case syntax.OpRepeat:
		return r.Min >= 1 && stopsRun(r.Sub[0])
	}
	return false
}

// assertsTextStart reports whether rx has ^ or \A: slicing the input
// would move what they match.
func assertsTextStart(rx string) bool {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return true
	}
	var walk func(r *syntax.Regexp) bool
	walk = func(r *syntax.Regexp) bool {
		if r.Op == syntax.OpBeginText || r.Op == syntax.OpBeginLine {
			return true
		}
		for _, s := range r.Sub {
			if walk(s) {
				return true
			}
		}
		return false
	}
	return walk(re)
}

// requiredLiterals finds literals every match must contain.
func requiredLiterals(rx string) []string {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return nil
	}
	var out []string
	rxlit.Required(re, func(lit string) {
		if len(lit) >= 3 {
			out = append(out, lit)
		}
	})
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	if len(out) > 4 {
		out = out[:4]
	}
	return out
}
