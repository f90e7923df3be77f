package exprenv

// acMatcher answers "does s contain any of these literals" in one pass
// over s (Aho-Corasick with a full transition table over byte classes).
// Hub scenarios test a field against every line of a data file; the
// expression VM would scan the field once per line.
type acMatcher struct {
	class [256]uint16
	ncls  int
	delta []int32 // state*ncls + class -> state, -1 for a final state
	final []bool
	empty bool // an empty literal matches everything
}

func newACMatcher(lits []string) *acMatcher {
	m := &acMatcher{}
	// Class 0 is every byte no literal uses.
	for _, l := range lits {
		if l == "" {
			m.empty = true
		}
		for i := 0; i < len(l); i++ {
			if m.class[l[i]] == 0 {
				m.ncls++
				m.class[l[i]] = uint16(m.ncls)
			}
		}
	}
	m.ncls++
	// Trie with -1 for missing edges.
	trie := []int32{}
	newState := func() int32 {
		for range m.ncls {
			trie = append(trie, -1)
		}
		m.final = append(m.final, false)
		return int32(len(m.final) - 1)
	}
	newState()
	for _, l := range lits {
		st := int32(0)
		for i := 0; i < len(l); i++ {
			c := int(m.class[l[i]])
			nx := trie[int(st)*m.ncls+c]
			if nx < 0 {
				nx = newState()
				trie[int(st)*m.ncls+c] = nx
			}
			st = nx
		}
		m.final[st] = true
	}
	// Breadth-first: fill missing edges from the failure state, so
	// matching never follows failure links.
	fail := make([]int32, len(m.final))
	queue := make([]int32, 0, len(m.final))
	for c := 0; c < m.ncls; c++ {
		nx := trie[c]
		if nx < 0 {
			trie[c] = 0
			continue
		}
		fail[nx] = 0
		queue = append(queue, nx)
	}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		if m.final[fail[st]] {
			m.final[st] = true
		}
		for c := 0; c < m.ncls; c++ {
			nx := trie[int(st)*m.ncls+c]
			if nx < 0 {
				trie[int(st)*m.ncls+c] = trie[int(fail[st])*m.ncls+c]
				continue
			}
			fail[nx] = trie[int(fail[st])*m.ncls+c]
			queue = append(queue, nx)
		}
	}
	// A transition into a final state is stored negated, so matching
	// reads one table entry per byte.
	for i, nx := range trie {
		if m.final[nx] {
			trie[i] = -1
		}
	}
	m.delta = trie
	return m
}

func (m *acMatcher) match(s string) bool {
	if m.empty {
		return true
	}
	if len(m.final) == 1 {
		return false
	}
	st := int32(0)
	n := m.ncls
	for i := 0; i < len(s); i++ {
		st = m.delta[int(st)*n+int(m.class[s[i]])]
		if st < 0 {
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
