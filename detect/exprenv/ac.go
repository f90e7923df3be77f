package exprenv

import (
	"slices"
	"strings"

	"github.com/moatsec/moat/detect/internal/litscan"
)

// acMatcher answers "does s contain any of these literals" in one pass
// over s (see litscan). Hub scenarios test a field against every line of
// a data file; the expression VM would scan the field once per line.
type acMatcher struct {
	scan *litscan.Scanner
	// lits are searched one by one when they are too many bytes for an
	// automaton (litscan.MaxBytes): slower, but no table of hundreds of
	// MiB for a data file of a few.
	lits  []string
	empty bool // an empty literal matches everything
	// stops are up to three bytes one of which every literal holds, rare
	// ones first; maxLen is the longest literal. A field without them is
	// rejected by IndexByte, which runs many bytes per step where the
	// automaton runs one; with them, the scan starts maxLen-1 before the
	// first (log4j's 35 payloads all hold 'J', which paths and user
	// agents seldom do).
	stops  []byte
	maxLen int
}

func newACMatcher(lits []string) *acMatcher {
	m := &acMatcher{empty: slices.Contains(lits, "")}
	if m.empty {
		return m
	}
	if m.scan = litscan.New(lits, false); m.scan == nil {
		m.lits = lits
	}
	m.stops = hittingBytes(lits, 3)
	for _, l := range lits {
		m.maxLen = max(m.maxLen, len(l))
	}
	return m
}

// hittingBytes picks at most limit bytes such that every literal holds
// one of them, from the rarest bytes in log text that can do it; nil when
// only common ones can (the prefilter would then pass nearly every field
// and only cost its IndexByte calls).
func hittingBytes(lits []string, limit int) []byte {
	for rank := 0; rank < common; rank++ {
		if out := cover(lits, limit, rank); out != nil {
			return out
		}
	}
	return nil
}

// cover picks greedily, among bytes of at most the given rank, the one in
// the most literals not yet covered.
func cover(lits []string, limit, rank int) []byte {
	var out []byte
	left := lits
	for len(left) > 0 {
		if len(out) == limit {
			return nil
		}
		var count [256]int
		for _, l := range left {
			var seen [256]bool
			for i := 0; i < len(l); i++ {
				if c := l[i]; !seen[c] && rarity(c) <= rank {
					seen[c] = true
					count[c]++
				}
			}
		}
		best := -1
		for c := range 256 {
			if count[c] > 0 && (best < 0 || count[c] > count[best]) {
				best = c
			}
		}
		if best < 0 {
			return nil
		}
		out = append(out, byte(best))
		var rest []string
		for _, l := range left {
			if strings.IndexByte(l, byte(best)) < 0 {
				rest = append(rest, l)
			}
		}
		left = rest
	}
	return out
}

// common is the rarity rank of bytes too frequent in paths, queries and
// user agents to filter on.
const common = 2

// rarity ranks how often a byte shows in paths, queries and user agents:
// 0 for rare punctuation, 1 for rare letters, common for the rest.
func rarity(c byte) int {
	switch {
	case strings.IndexByte("jqxzkvJQXZKV", c) >= 0:
		return 1
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
		strings.IndexByte("/.-_ =&?:;,()+%", c) >= 0:
		return common
	}
	return 0
}

func (m *acMatcher) match(s string) bool {
	if m.empty {
		return true
	}
	if len(m.stops) > 0 {
		first := -1
		for _, c := range m.stops {
			if i := strings.IndexByte(s, c); i >= 0 && (first < 0 || i < first) {
				first = i
			}
		}
		if first < 0 {
			return false
		}
		s = s[max(0, first-(m.maxLen-1)):]
	}
	if m.scan != nil {
		return m.scan.Any(s)
	}
	for _, l := range m.lits {
		if strings.Contains(s, l) {
			return true
		}
	}
	return false
}

// affixMatcher answers "does s start (or end) with any of these literals"
// with one set lookup per distinct literal length.
type affixMatcher struct {
	suffix bool
	lens   []int
	set    map[string]struct{}
}

func newAffixMatcher(lits []string, suffix bool) *affixMatcher {
	m := &affixMatcher{suffix: suffix, set: make(map[string]struct{}, len(lits))}
	seen := map[int]bool{}
	for _, l := range lits {
		m.set[l] = struct{}{}
		if !seen[len(l)] {
			seen[len(l)] = true
			m.lens = append(m.lens, len(l))
		}
	}
	return m
}

func (m *affixMatcher) match(s string) bool {
	for _, n := range m.lens {
		if n > len(s) {
			continue
		}
		var part string
		if m.suffix {
			part = s[len(s)-n:]
		} else {
			part = s[:n]
		}
		if _, ok := m.set[part]; ok {
			return true
		}
	}
	return false
}

// foldAll applies f to every literal.
func foldAll(lits []string, f func(string) string) []string {
	if f == nil {
		return lits
	}
	out := make([]string, len(lits))
	for i, l := range lits {
		out[i] = f(l)
	}
	return out
}
