package scenario

// multiAC finds which of a set of literals a string contains, in one pass
// (Aho-Corasick over byte classes, with a full transition table so that a
// scan never follows failure links).
type multiAC struct {
	class [256]uint16
	ncls  int
	// delta is the transition table, state*ncls + class -> state: 16
	// bits a state keep it half as many cache lines as 32 would.
	delta []uint16
	// out lists, per state, the literals (by index) that end there,
	// through failure links too.
	out [][]int
}

// maxACBytes bounds the literal bytes of one automaton, and so its
// states below 1<<16; a term with more is not guarded by its contains
// atoms (see guardTerm.unbounded).
const maxACBytes = 1<<16 - 1

// newMultiAC returns the automaton for lits, nil when they are too many
// bytes (maxACBytes) or one is empty. With fold, ASCII letters match
// either case.
func newMultiAC(lits []string, fold bool) *multiAC {
	total := 0
	for _, l := range lits {
		if l == "" {
			return nil
		}
		total += len(l)
	}
	if total > maxACBytes {
		return nil
	}
	m := &multiAC{}
	for _, l := range lits {
		for i := 0; i < len(l); i++ {
			c := l[i]
			if fold {
				c = lowerASCII(c)
			}
			if m.class[c] == 0 {
				m.ncls++
				m.class[c] = uint16(m.ncls)
			}
		}
	}
	if fold {
		for c := 'A'; c <= 'Z'; c++ {
			m.class[c] = m.class[c+'a'-'A']
		}
	}
	m.ncls++ // class 0: bytes no literal holds
	var trie []int32
	newState := func() int32 {
		for range m.ncls {
			trie = append(trie, -1)
		}
		m.out = append(m.out, nil)
		return int32(len(m.out) - 1)
	}
	newState()
	for i, l := range lits {
		st := int32(0)
		for k := 0; k < len(l); k++ {
			c := int(m.class[l[k]])
			nx := trie[int(st)*m.ncls+c]
			if nx < 0 {
				nx = newState()
				trie[int(st)*m.ncls+c] = nx
			}
			st = nx
		}
		m.out[st] = append(m.out[st], i)
	}
	fail := make([]int32, len(m.out))
	var queue []int32
	for c := 0; c < m.ncls; c++ {
		if nx := trie[c]; nx < 0 {
			trie[c] = 0
		} else {
			queue = append(queue, nx)
		}
	}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		if f := fail[st]; len(m.out[f]) > 0 {
			m.out[st] = append(m.out[st][:len(m.out[st]):len(m.out[st])], m.out[f]...)
		}
		for c := 0; c < m.ncls; c++ {
			i := int(st)*m.ncls + c
			via := trie[int(fail[st])*m.ncls+c]
			if trie[i] < 0 {
				trie[i] = via
				continue
			}
			fail[trie[i]] = via
			queue = append(queue, trie[i])
		}
	}
	m.delta = make([]uint16, len(trie))
	for i, st := range trie {
		m.delta[i] = uint16(st)
	}
	return m
}

// find appends to dst the index of every literal s contains, once per
// occurrence, and reports whether s is all ASCII.
func (m *multiAC) find(s string, dst []int) ([]int, bool) {
	st := uint16(0)
	var or byte
	for i := 0; i < len(s); i++ {
		or |= s[i]
		st = m.delta[int(st)*m.ncls+int(m.class[s[i]])]
		if o := m.out[st]; len(o) > 0 {
			dst = append(dst, o...)
		}
	}
	return dst, or < 0x80
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
