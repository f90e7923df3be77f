package grok

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moatsec/moat/detect/grok/internal/ascii"
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
	v6end  []bool      // per run: the pattern ends with it
	ip6    *tokenCheck // the run is an address
	ip6pre *tokenCheck // the run is where IPV6's preferred match ends
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
	re *regexp.Regexp
	// anch is re anchored at the start of the input (nil when the
	// pattern is anchored itself). A match there is the leftmost match,
	// with the same submatches, and most lines match their pattern from
	// their first byte: trying it first spares the unanchored search,
	// whose NFA keeps a thread alive for every start position.
	anch *regexp.Regexp
	// prog is re for the Backtrack tier, nil when it could not compile
	// or the tier is off.
	prog *ascii.Prog
	// names[i] is the field name of submatch i ("" for unnamed groups).
	names []string
}

// String returns the grok text the pattern was compiled from.
func (c *Pattern) String() string { return c.src }

// Tier returns the tier that serves the pattern first.
func (c *Pattern) Tier() Tier { return c.tiers[0] }

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
	re, err := regexp.Compile(rx)
	if err != nil {
		return nil, fmt.Errorf("compile grok %q: %w", src, err)
	}
	c := &Pattern{lib: g, src: src}
	c.full = variant{re: re, prog: g.compileASCII(rx), names: fieldNames(re, gen)}
	anchored := strings.HasPrefix(src, "^")
	if !anchored {
		c.full.anch = anchor(rx)
	}
	if c.v4 = g.compileV4(src, re, anchored); c.v4 != nil {
		c.v4.names = c.full.names
		c.compileV6(rx)
	}
	c.lits = requiredLiterals(rx)
	if p, _ := re.LiteralPrefix(); p != "" && c.full.anch != nil && (c.v4 == nil || c.v4.anch != nil) && !assertsTextStart(rx) {
		c.pre = p
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

// compileV4 builds the v4 variant of src (full compiled as re), or nil.
func (g *Library) compileV4(src string, re *regexp.Regexp, anchored bool) *variant {
	var gen4 []string
	rx4, err := g.expand(src, &gen4, 0, expandNoV6)
	if err != nil || rx4 == re.String() || !g.standardV4() {
		return nil
	}
	re4, err := regexp.Compile(rx4)
	if err != nil || re4.NumSubexp() != re.NumSubexp() {
		return nil
	}
	v := &variant{re: re4, prog: g.compileASCII(rx4)}
	if !anchored {
		v.anch = anchor(rx4)
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
	re6, err1 := regexp.Compile(rx6)
	a6, err2 := regexp.Compile("^(?:" + rx6 + ")")
	var ipNames []string
	ip6, err3 := g.expand("%{IPV6}", &ipNames, 0, expandFull)
	full, err4 := regexp.Compile("^(?:" + ip6 + ")$")
	pref, err5 := regexp.Compile("^(?:" + ip6 + ")")
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return
	}
	v := &variant{re: re6, anch: a6, prog: g.compileASCII(rx6), names: fieldNames(re6, gen6)}
	var runs []int
	for i, n := range re6.SubexpNames() {
		if n == v6Group {
			runs = append(runs, i)
			v.names[i] = ""
		}
	}
	if len(runs) != len(atEnd) {
		return
	}
	c.v6, c.v6runs, c.v6end = v, runs, atEnd
	c.ip6 = &tokenCheck{re: full, seen: map[string]bool{}}
	c.ip6pre = &tokenCheck{re: pref, seen: map[string]bool{}, whole: true}
}

// compileASCII compiles rx for the Backtrack tier, or returns nil.
func (g *Library) compileASCII(rx string) *ascii.Prog {
	if g.opts.NoBacktrack {
		return nil
	}
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return nil
	}
	p, err := ascii.Compile(re)
	if err != nil {
		return nil
	}
	return p
}

// fieldNames maps the submatches of re to grok field names.
func fieldNames(re *regexp.Regexp, gen []string) []string {
	names := make([]string, re.NumSubexp()+1)
	for i, n := range re.SubexpNames() {
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
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			if r.Flags&syntax.FoldCase == 0 {
				if s := string(r.Rune); len(s) >= 3 {
					out = append(out, s)
				}
			}
		case syntax.OpCapture, syntax.OpPlus:
			walk(r.Sub[0])
		case syntax.OpRepeat:
			if r.Min >= 1 {
				walk(r.Sub[0])
			}
		case syntax.OpConcat:
			for _, s := range r.Sub {
				walk(s)
			}
		}
	}
	walk(re)
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	if len(out) > 4 {
		out = out[:4]
	}
	return out
}
