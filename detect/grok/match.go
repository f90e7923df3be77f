package grok

import (
	"regexp"
	"strings"
)

// Match runs the pattern on s and sets parsed[field] for every named
// group, matched or not (unmatched groups are ""), as CrowdSec's grok
// does. For names used twice the last non-empty value wins.
func (c *Pattern) Match(s string, parsed map[string]string) bool {
	m, _ := c.MatchTier(s, parsed)
	return m
}

// MatchTier is Match that also tells which tier answered.
func (c *Pattern) MatchTier(s string, parsed map[string]string) (bool, Tier) {
	t := Text{s: s}
	return c.MatchText(&t, parsed)
}

// Text is an input patterns are tried on in turn (the children of a
// parser node all read the same field): what one pattern learns of it to
// pick its variant is kept for the next.
type Text struct {
	s     string
	shape uint8
}

// The bits of Text.shape.
const (
	shapeKnown = 1 << iota
	shapeLongLabel
	shapeIPv6Run
)

// Set makes t stand for s, keeping what it knows if s is the same text.
func (t *Text) Set(s string) {
	if t.s != s {
		*t = Text{s: s}
	}
}

// shapeOf is shapeOf(t.s), scanned once.
func (t *Text) shapeOf() (longLabel, ipv6Run bool) {
	if t.shape&shapeKnown == 0 {
		t.shape = shapeKnown
		long, v6 := shapeOf(t.s)
		if long {
			t.shape |= shapeLongLabel
		}
		if v6 {
			t.shape |= shapeIPv6Run
		}
	}
	return t.shape&shapeLongLabel != 0, t.shape&shapeIPv6Run != 0
}

// MatchText is MatchTier on a Text.
func (c *Pattern) MatchText(t *Text, parsed map[string]string) (bool, Tier) {
	s := t.s
	for _, l := range c.lits {
		if !strings.Contains(s, l) {
			return false, c.tiers[0]
		}
	}
	if c.fast != nil {
		if m, ok := c.fast(s, parsed); ok {
			return m, Fast
		}
	}
	sc, _ := c.lib.scratch.Get().(*scratch)
	if sc == nil {
		sc = &scratch{}
	}
	defer c.lib.scratch.Put(sc)
	v := c.variantFor(t)
	idx, tier := c.find(s, v, sc)
	if v == c.v6 && idx != nil {
		// The runs taken for addresses must be addresses; if one is not,
		// the full pattern decides.
		for k, g := range c.v6runs {
			a := idx[2*g]
			if a < 0 {
				continue
			}
			check := c.ip6.whole
			if c.v6end[k] {
				check = c.ip6.pre
			}
			if !check.ok(s[a:idx[2*g+1]]) {
				v = &c.full
				idx, tier = c.find(s, v, sc)
				break
			}
		}
	}
	if idx == nil {
		return false, tier
	}
	names := v.names
	for i := 1; i < len(names); i++ {
		n := names[i]
		if n == "" {
			continue
		}
		a, z := idx[2*i], idx[2*i+1]
		val := ""
		if a >= 0 {
			val = s[a:z]
		}
		if val == "" && dupEarlierSet(names, i) {
			continue
		}
		parsed[n] = val
	}
	return true, tier
}

// variantFor picks the variant that matches s as the full pattern does.
func (c *Pattern) variantFor(t *Text) *variant {
	if c.v4 == nil {
		return &c.full
	}
	s := t.s
	switch long, ipv6Run := t.shapeOf(); {
	case long:
	case !ipv6Run:
		return c.v4
	case c.v6 != nil && strings.IndexByte(s, '%') < 0:
		return c.v6
	}
	return &c.full
}

// find returns the submatch indexes of the leftmost match of v in s, and
// the tier that found them. The indexes may be sc's.
func (c *Pattern) find(s string, v *variant, sc *scratch) ([]int, Tier) {
	if v.prog != nil {
		n := v.prog.NumSlots()
		if cap(sc.caps) < n {
			sc.caps = make([]int, n)
		}
		caps := sc.caps[:n]
		if matched, ok := v.prog.Find(&sc.m, s, caps); ok {
			if !matched {
				return nil, Backtrack
			}
			return caps, Backtrack
		}
	}
	re, anch := v.regexps()
	return c.findRegexp(s, re, anch), Regexp
}

// findRegexp is the Regexp tier: re, or anch (re anchored at the start of
// its input; may be nil) where it is known to find the same match.
func (c *Pattern) findRegexp(s string, re, anch *regexp.Regexp) []int {
	if c.pre != "" && anch != nil {
		for off := 0; ; {
			i := strings.Index(s[off:], c.pre)
			if i < 0 {
				return nil
			}
			p := off + i
			if idx := anch.FindStringSubmatchIndex(s[p:]); idx != nil {
				for k := range idx {
					if idx[k] >= 0 {
						idx[k] += p
					}
				}
				return idx
			}
			off = p + 1
		}
	}
	var idx []int
	if anch != nil {
		idx = anch.FindStringSubmatchIndex(s)
	}
	if idx == nil {
		idx = re.FindStringSubmatchIndex(s)
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

// shapeOf scans s once for what selects a pattern's variant: a run of 64
// label characters ([0-9A-Za-z-]), and a run of [0-9A-Fa-f:.] holding
// "::" or six colons, inside which every IPV6 match lies.
func shapeOf(s string) (longLabel, ipv6Run bool) {
	// An IPv6 run holds "::" or six colons: most text with a colon has
	// neither, which two vector searches tell.
	if strings.IndexByte(s, ':') < 0 || strings.Count(s, ":") < 6 && !strings.Contains(s, "::") {
		return labelRun(s, 64), false
	}
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

// labelRun reports whether s has n label characters in a row. It tests
// the last byte of each window of n first: a window holding a byte of
// another kind is skipped whole, so text with spaces is read sparsely.
func labelRun(s string, n int) bool {
	for end := n - 1; end < len(s); {
		j := end
		for j > end-n && byteKinds[s[j]]&labelByte != 0 {
			j--
		}
		if j == end-n {
			return true
		}
		end = j + n
	}
	return false
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
