// Package litscan finds which of a set of literals a string contains, in
// one pass: Aho-Corasick over byte classes, with a full transition table
// so that a scan never follows failure links. Log fields are scanned for
// the literals of many filters or grok patterns at once.
package litscan

// Scanner is the automaton of a set of literals; safe for concurrent use.
type Scanner struct {
	class [256]uint16
	ncls  int
	// delta is the transition table: at row*ncls + class, the next
	// state's row times ncls, shifted left by one, with the low bit set
	// when literals end in it. Rows premultiplied and the flag in the
	// entry keep a step to two dependent loads.
	delta []uint32
	// out lists, per state, the literals (by index) that end there,
	// through failure links too.
	out [][]int
}

// MaxBytes bounds the literal bytes of one automaton: its states, times
// its classes and the flag bit, fit a table entry.
const MaxBytes = 1<<16 - 1

// New returns the automaton for lits, nil when they are too many bytes
// (MaxBytes) or one is empty. With fold, ASCII letters match either case.
func New(lits []string, fold bool) *Scanner {
	total := 0
	for _, l := range lits {
		if l == "" {
			return nil
		}
		total += len(l)
	}
	if total > MaxBytes {
		return nil
	}
	m := &Scanner{}
	for _, l := range lits {
		for i := 0; i < len(l); i++ {
			c := l[i]
			if fold {
				c = LowerASCII(c)
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
	m.delta = make([]uint32, len(trie))
	for i, st := range trie {
		e := uint32(st) * uint32(m.ncls) << 1
		if len(m.out[st]) > 0 {
			e |= 1
		}
		m.delta[i] = e
	}
	return m
}

// Find appends to dst the index of every literal s contains, once per
// occurrence, and reports whether s is all ASCII.
func (m *Scanner) Find(s string, dst []int) ([]int, bool) {
	row := uint32(0)
	var or byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		or |= c
		e := m.delta[row+uint32(m.class[c])]
		row = e >> 1
		if e&1 != 0 {
			dst = append(dst, m.out[row/uint32(m.ncls)]...)
		}
	}
	return dst, or < 0x80
}

// LowerASCII is c, or its lower case if an ASCII capital.
func LowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Any reports whether s contains one of the literals; it reads s only up
// to the end of the first it finds.
func (m *Scanner) Any(s string) bool {
	row := uint32(0)
	for i := 0; i < len(s); i++ {
		e := m.delta[row+uint32(m.class[s[i]])]
		if e&1 != 0 {
			return true
		}
		row = e >> 1
	}
	return false
}
