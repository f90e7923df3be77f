package parse

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/moatsec/moat/detect/parse/internal/ascii"
)

// grokLib holds pattern definitions (NAME -> grok text) and their
// expansions, so each pattern is expanded and compiled once.
type grokLib struct {
	defs     map[string]string
	expanded map[string]string
	compiled map[string]*grok
	// regexpOnly leaves every pattern to Go's regexp: the reference the
	// ASCII backtracker is measured and fuzzed against.
	regexpOnly bool
	// scratch is match state the library's groks take turns with.
	scratch atomic.Pointer[grokScratch]
}

type grokScratch struct {
	m    ascii.Machine
	caps []int
}

func newGrokLib() *grokLib {
	g := &grokLib{
		defs:     make(map[string]string, len(basePatterns)),
		expanded: map[string]string{},
		compiled: map[string]*grok{},
	}
	for k, v := range basePatterns {
		g.defs[k] = v
	}
	return g
}

// loadDir reads every pattern file in dir ("NAME REGEX" per line, # comments).
func (g *grokLib) loadDir(dir string) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pattern dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "LICENSE" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := g.loadFile(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (g *grokLib) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load patterns: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.IndexAny(l, " \t")
		if i < 0 {
			continue
		}
		g.add(l[:i], strings.TrimSpace(l[i:]))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read patterns %s: %w", path, err)
	}
	return nil
}

func (g *grokLib) add(name, def string) {
	g.defs[name] = def
	// A redefinition invalidates expansions that may depend on it.
	clear(g.expanded)
	clear(g.compiled)
}

// grok is a compiled grok pattern.
type grok struct {
	lib *grokLib
	re  *regexp.Regexp
	// ascii, ascii4 and ascii6 match as re, v4 and v6 do, on ASCII
	// input, without Go's regexp (nil when they could not compile).
	ascii, ascii4, ascii6 *ascii.Prog
	// v4 is re with the IPV6 pattern removed and HOSTNAME's labels
	// unbounded, or nil when re uses neither. IPV6 can only match inside a
	// run of hex digits, dots and colons that holds "::" or six colons, and
	// a label bound of 63 only matters on a run of 64 label characters; on
	// input without such runs v4 matches exactly as re does, and it is many
	// times faster (the IPV6 alternation and the 62 unrolled label
	// repetitions make most of the program).
	v4 *regexp.Regexp
	// anch and anch4 are re and v4 anchored at the start of the input. A
	// match there is the leftmost match, with the same submatches, and
	// most lines match their pattern from their first byte: trying it
	// first spares the unanchored search, whose NFA keeps a thread alive
	// for every start position.
	anch, anch4 *regexp.Regexp
	// v6 is re with IPV6 taken as any run of its characters (v6Group
	// submatches, listed in v6runs) and HOSTNAME unbounded, when every
	// such run is followed by a character it cannot hold: on input
	// without '%' the run is the only place an IPV6 match can end, so v6
	// matches as re does once each run taken is checked to be an address
	// (ip6). Lines with IPv6 addresses then avoid re's NFA.
	v6, anch6 *regexp.Regexp
	names6    []string
	v6runs    []int
	v6end     []bool      // per run: the pattern ends with it
	ip6       *tokenCheck // the run is an address
	ip6pre    *tokenCheck // the run is where IPV6's preferred match ends
	// pre is the literal every match starts with, when the pattern has one
	// and no assertion on the start of the text: a match can only start at
	// an occurrence of pre, so anch (anch4) run at each occurrence finds
	// the leftmost match without the unanchored search.
	pre string
	// names[i] is the field name of submatch i ("" for unnamed groups).
	names []string
	// lits are substrings every match contains, longest first; checked
	// before the regexp.
	lits []string
	// fast is a hand-written matcher for a hot pattern; ok=false sends
	// the input to the regexp.
	fast func(s string, parsed map[string]string) (matched, ok bool)
}

// expand turns grok text into a Go regexp; names collects field names for
// the generated groups.
// expandMode selects how expand writes IPV6 and HOSTNAME.
type expandMode int

const (
	expandFull expandMode = iota
	// expandNoV6: IPV6 never matches, HOSTNAME unbounded (grok.v4).
	expandNoV6
	// expandV6Run: IPV6 is any run of its characters, captured as
	// v6Group, HOSTNAME unbounded (grok.v6).
	expandV6Run
)

const v6Group = "v6run"

func (g *grokLib) expand(src string, names *[]string, depth int, mode expandMode) (string, error) {
	if depth > 64 {
		return "", fmt.Errorf("grok pattern nests too deep")
	}
	var b strings.Builder
	for {
		i := strings.Index(src, "%{")
		if i < 0 {
			b.WriteString(src)
			break
		}
		b.WriteString(src[:i])
		j := strings.IndexByte(src[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated %%{ in %q", src)
		}
		ref := src[i+2 : i+j]
		src = src[i+j+1:]
		parts := strings.SplitN(ref, ":", 3)
		def, ok := g.defs[parts[0]]
		if !ok {
			return "", fmt.Errorf("unknown grok pattern %q", parts[0])
		}
		if mode != expandFull {
			switch parts[0] {
			case "IPV6":
				def = neverMatch
				if mode == expandV6Run {
					def = "(?P<" + v6Group + ">[0-9A-Fa-f:.]+)"
				}
			case "HOSTNAME":
				def = hostnameUnbounded
			}
		}
		inner, err := g.expand(def, names, depth+1, mode)
		if err != nil {
			return "", fmt.Errorf("%s: %w", parts[0], err)
		}
		if len(parts) >= 2 && parts[1] != "" {
			*names = append(*names, parts[1])
			b.WriteString("(?P<g" + strconv.Itoa(len(*names)-1) + ">")
		} else {
			b.WriteString("(?:")
		}
		b.WriteString(inner)
		b.WriteString(")")
	}
	return b.String(), nil
}

func (g *grokLib) compile(src string) (*grok, error) {
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
	c := &grok{lib: g, re: re, ascii: g.compileASCII(rx), names: make([]string, re.NumSubexp()+1)}
	anchored := strings.HasPrefix(src, "^")
	if !anchored {
		if a, err := regexp.Compile("^(?:" + rx + ")"); err == nil {
			c.anch = a
		}
	}
	var gen4 []string
	if rx4, err := g.expand(src, &gen4, 0, expandNoV6); err == nil && rx4 != rx && g.standardV4() {
		if re4, err := regexp.Compile(rx4); err == nil && re4.NumSubexp() == re.NumSubexp() {
			c.v4, c.ascii4 = re4, g.compileASCII(rx4)
			if !anchored {
				if a, err := regexp.Compile("^(?:" + rx4 + ")"); err == nil {
					c.anch4 = a
				}
			}
		}
	}
	c.names = fieldNames(re, gen)
	var gen6 []string
	rx6, err := g.expand(src, &gen6, 0, expandV6Run)
	atEnd, bounded := v6RunsBounded(rx6)
	if err == nil && rx6 != rx && c.v4 != nil && bounded {
		re6, err1 := regexp.Compile(rx6)
		a6, err2 := regexp.Compile("^(?:" + rx6 + ")")
		var ipNames []string
		ip6, err3 := g.expand("%{IPV6}", &ipNames, 0, expandFull)
		full, err4 := regexp.Compile("^(?:" + ip6 + ")$")
		pref, err5 := regexp.Compile("^(?:" + ip6 + ")")
		if err1 == nil && err2 == nil && err3 == nil && err4 == nil && err5 == nil {
			c.v6, c.anch6, c.ascii6 = re6, a6, g.compileASCII(rx6)
			c.ip6 = &tokenCheck{re: full, seen: map[string]bool{}}
			c.ip6pre = &tokenCheck{re: pref, seen: map[string]bool{}, whole: true}
			c.v6end = atEnd
			c.names6 = fieldNames(re6, gen6)
			for i, n := range re6.SubexpNames() {
				if n == v6Group {
					c.v6runs = append(c.v6runs, i)
					c.names6[i] = ""
				}
			}
			if len(c.v6runs) != len(c.v6end) {
				c.v6 = nil
			}
		}
	}

	c.lits = requiredLiterals(rx)
	if p, _ := re.LiteralPrefix(); p != "" && c.anch != nil && (c.v4 == nil || c.anch4 != nil) && !assertsTextStart(rx) {
		c.pre = p
	}
	if src == "^%{SYSLOGLINE}" && g.standardSyslog() {
		c.fast = fastSyslogLine
	} else if f := g.nginxFast(src); f != nil {
		c.fast = f
	} else if f := g.httpFast(src); f != nil {
		c.fast = f
	}
	g.compiled[src] = c
	return c, nil
}

// compileASCII compiles rx for ASCII input, or returns nil.
func (g *grokLib) compileASCII(rx string) *ascii.Prog {
	if g.regexpOnly {
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

// match runs the grok on s and calls set for every named group, matched
// or not (unmatched groups are ""), as CrowdSec's grok does. For names
// used twice the last non-empty value wins.
func (c *grok) match(s string, parsed map[string]string) bool {
	for _, l := range c.lits {
		if !strings.Contains(s, l) {
			return false
		}
	}
	if c.fast != nil {
		if m, ok := c.fast(s, parsed); ok {
			return m
		}
	}
	sc := c.lib.scratch.Swap(nil)
	if sc == nil {
		sc = &grokScratch{}
	}
	defer c.lib.scratch.Store(sc)
	re, anch, prog, names := c.re, c.anch, c.ascii, c.names
	v6 := false
	if c.v4 != nil {
		switch long, ipv6Run := shapeOf(s); {
		case long:
		case !ipv6Run:
			re, anch, prog = c.v4, c.anch4, c.ascii4
		case c.v6 != nil && strings.IndexByte(s, '%') < 0:
			re, anch, prog, names, v6 = c.v6, c.anch6, c.ascii6, c.names6, true
		}
	}
	idx := c.find(s, re, anch, prog, sc)
	if v6 && idx != nil {
		// The runs taken for addresses must be addresses; if one is not,
		// the full regexp decides.
		for k, g := range c.v6runs {
			a := idx[2*g]
			if a < 0 {
				continue
			}
			check := c.ip6
			if c.v6end[k] {
				check = c.ip6pre
			}
			if !check.ok(s[a:idx[2*g+1]]) {
				names = c.names
				idx = c.find(s, c.re, c.anch, c.ascii, sc)
				break
			}
		}
	}
	if idx == nil {
		return false
	}
	for i := 1; i < len(names); i++ {
		n := names[i]
		if n == "" {
			continue
		}
		a, z := idx[2*i], idx[2*i+1]
		v := ""
		if a >= 0 {
			v = s[a:z]
		}
		if v == "" && dupEarlierSet(names, i) {
			continue
		}
		parsed[n] = v
	}
	return true
}

// find returns the submatch indexes of the leftmost match of re in s;
// anch is re anchored at the start of its input, prog re for ASCII input
// (nil when there is none). The indexes may be sc's.
func (c *grok) find(s string, re, anch *regexp.Regexp, prog *ascii.Prog, sc *grokScratch) []int {
	if prog != nil {
		n := prog.NumSlots()
		if cap(sc.caps) < n {
			sc.caps = make([]int, n)
		}
		caps := sc.caps[:n]
		if matched, ok := prog.Find(&sc.m, s, caps); ok {
			if !matched {
				return nil
			}
			return caps
		}
	}
	var idx []int
	switch {
	case c.pre != "":
		for off := 0; ; {
			i := strings.Index(s[off:], c.pre)
			if i < 0 {
				break
			}
			p := off + i
			if idx = anch.FindStringSubmatchIndex(s[p:]); idx != nil {
				for k := range idx {
					if idx[k] >= 0 {
						idx[k] += p
					}
				}
				break
			}
			off = p + 1
		}
	default:
		if anch != nil {
			idx = anch.FindStringSubmatchIndex(s)
		}
		if idx == nil {
			idx = re.FindStringSubmatchIndex(s)
		}
	}
	return idx
}

// dupEarlierSet reports whether a group before i carries the same name, in
// which case an empty later value must not clobber it.
func dupEarlierSet(names []string, i int) bool {
	for j := 1; j < i; j++ {
		if names[j] == names[i] {
			return true
		}
	}
	return false
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

// neverMatch is an empty character class: it matches nothing.
const neverMatch = `[^\x00-\x{10FFFF}]`

// hostnameUnbounded is HOSTNAME with {0,62} as *; see grok.v4.
const hostnameUnbounded = `\b(?:[0-9A-Za-z][0-9A-Za-z-]*)(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]*))*(?:\.?|\b)`

// shapeOf scans s once for what selects a grok's variant: a run of 64
// label characters ([0-9A-Za-z-]), and a run of [0-9A-Fa-f:.] holding
// "::" or six colons, inside which every IPV6 match lies.
func shapeOf(s string) (longLabel, ipv6Run bool) {
	label, colons := 0, 0
	prevColon := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		k := byteKinds[c]
		if k&labelByte != 0 {
			if label++; label >= 64 {
				return true, ipv6Run
			}
		} else {
			label = 0
		}
		if ipv6Run {
			continue
		}
		switch {
		case c == ':':
			if prevColon || colons >= 5 {
				ipv6Run = true
				continue
			}
			colons++
			prevColon = true
			continue
		case k&hexOrDot == 0:
			colons = 0
		}
		prevColon = false
	}
	return false, ipv6Run
}

const (
	labelByte = 1 << iota // [0-9A-Za-z-]
	hexOrDot              // [0-9A-Fa-f.]
)

// byteKinds classifies bytes for shapeOf.
var byteKinds = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		if isAlnum(b) || b == '-' {
			t[c] |= labelByte
		}
		if b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' || b == '.' {
			t[c] |= hexOrDot
		}
	}
	return t
}()
