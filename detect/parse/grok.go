package parse

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"
)

// grokLib holds pattern definitions (NAME -> grok text) and their
// expansions, so each pattern is expanded and compiled once.
type grokLib struct {
	defs     map[string]string
	expanded map[string]string
	compiled map[string]*grok
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
	re *regexp.Regexp
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
func (g *grokLib) expand(src string, names *[]string, depth int, noV6 bool) (string, error) {
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
		if noV6 {
			switch parts[0] {
			case "IPV6":
				def = neverMatch
			case "HOSTNAME":
				def = hostnameUnbounded
			}
		}
		inner, err := g.expand(def, names, depth+1, noV6)
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
	rx, err := g.expand(src, &gen, 0, false)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(rx)
	if err != nil {
		return nil, fmt.Errorf("compile grok %q: %w", src, err)
	}
	c := &grok{re: re, names: make([]string, re.NumSubexp()+1)}
	anchored := strings.HasPrefix(src, "^")
	if !anchored {
		if a, err := regexp.Compile("^(?:" + rx + ")"); err == nil {
			c.anch = a
		}
	}
	var gen4 []string
	if rx4, err := g.expand(src, &gen4, 0, true); err == nil && rx4 != rx && g.standardV4() {
		if re4, err := regexp.Compile(rx4); err == nil && re4.NumSubexp() == re.NumSubexp() {
			c.v4 = re4
			if !anchored {
				if a, err := regexp.Compile("^(?:" + rx4 + ")"); err == nil {
					c.anch4 = a
				}
			}
		}
	}
	for i, n := range re.SubexpNames() {
		if n == "" {
			continue
		}
		if strings.HasPrefix(n, "g") {
			if k, err := strconv.Atoi(n[1:]); err == nil && k < len(gen) {
				c.names[i] = gen[k]
				continue
			}
		}
		c.names[i] = n // a raw (?<name>...) group of the pattern text
	}
	c.lits = requiredLiterals(rx)
	if p, _ := re.LiteralPrefix(); p != "" && c.anch != nil && (c.v4 == nil || c.anch4 != nil) && !assertsTextStart(rx) {
		c.pre = p
	}
	if src == "^%{SYSLOGLINE}" && g.standardSyslog() {
		c.fast = fastSyslogLine
	} else if f := g.nginxFast(src); f != nil {
		c.fast = f
	}
	g.compiled[src] = c
	return c, nil
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
	re, anch := c.re, c.anch
	if c.v4 != nil && !mayHoldIPv6(s) && !hasLongLabel(s) {
		re, anch = c.v4, c.anch4
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
	if idx == nil {
		return false
	}
	for i := 1; i < len(c.names); i++ {
		n := c.names[i]
		if n == "" {
			continue
		}
		a, z := idx[2*i], idx[2*i+1]
		v := ""
		if a >= 0 {
			v = s[a:z]
		}
		if v == "" && c.dupEarlierSet(i) {
			continue
		}
		parsed[n] = v
	}
	return true
}

// dupEarlierSet reports whether a group before i carries the same name, in
// which case an empty later value must not clobber it.
func (c *grok) dupEarlierSet(i int) bool {
	for j := 1; j < i; j++ {
		if c.names[j] == c.names[i] {
			return true
		}
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

// mayHoldIPv6 reports whether s has a run of [0-9A-Fa-f:.] holding "::" or
// at least six colons: every IPV6 match lies inside such a run.
func mayHoldIPv6(s string) bool {
	colons := 0
	prevColon := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			if prevColon {
				return true
			}
			colons++
			if colons >= 6 {
				return true
			}
			prevColon = true
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == '.':
		default:
			colons = 0
		}
		prevColon = false
	}
	return false
}

// hostnameUnbounded is HOSTNAME with {0,62} as *; see grok.v4.
const hostnameUnbounded = `\b(?:[0-9A-Za-z][0-9A-Za-z-]*)(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]*))*(?:\.?|\b)`

// hasLongLabel reports whether s has 64 label characters ([0-9A-Za-z-]) in
// a row.
func hasLongLabel(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; isAlnum(c) || c == '-' {
			n++
			if n >= 64 {
				return true
			}
		} else {
			n = 0
		}
	}
	return false
}
