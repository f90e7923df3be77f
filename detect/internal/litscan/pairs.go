package litscan

// Pairs rules out, in one pass over a string, the members of a set
// (up to 64) each of which needs some literals: it finds the one literal
// of each member most likely to be missing. Each such literal is keyed by
// a byte pair inside it chosen to be rare in log text; a scan tests every
// pair of the string against a bitmap of the keys and compares a literal
// only where its key occurs. Unlike the automaton's steps, the pair tests
// do not depend on each other, so a scan runs at the speed of the loads
// rather than of their latency: on a short field it costs a few
// strings.Contains, whatever the number of members.
type Pairs struct {
	keys [1 << 16 / 64]uint64 // bit k set when byte pair k keys a literal
	lits []pairLit
}

type pairLit struct {
	lit string
	key uint16
	off int // where key starts in lit
}

// MaxPairs is how many members one Pairs rules out: a result's bits.
const MaxPairs = 64

// NewPairs returns the scanner for members that need the literals
// required[i] each, nil when they are more than MaxPairs or one has no
// literal of two bytes or more.
func NewPairs(required [][]string) *Pairs {
	if len(required) > MaxPairs {
		return nil
	}
	p := &Pairs{lits: make([]pairLit, len(required))}
	for i, lits := range required {
		best, bestCost := pairLit{}, 1<<30
		for _, l := range lits {
			if len(l) < 2 {
				continue
			}
			off, cost := rarestPair(l)
			if cost < bestCost || cost == bestCost && len(l) > len(best.lit) {
				best, bestCost = pairLit{lit: l, key: uint16(l[off])<<8 | uint16(l[off+1]), off: off}, cost
			}
		}
		if best.lit == "" {
			return nil
		}
		p.lits[i] = best
		p.keys[best.key>>6] |= 1 << (best.key & 63)
	}
	return p
}

// Find returns the members s may satisfy: bit i is clear when s lacks a
// literal required[i] needs.
func (p *Pairs) Find(s string) uint64 {
	var found uint64
	if len(s) < 2 {
		return 0
	}
	k := uint16(s[0])
	for i := 1; i < len(s); i++ {
		k = k<<8 | uint16(s[i])
		if p.keys[k>>6]&(1<<(k&63)) != 0 {
			found |= p.verify(s, i-1, k)
		}
	}
	return found
}

// verify returns the literals keyed by k that s holds with the key at i.
func (p *Pairs) verify(s string, i int, k uint16) uint64 {
	var found uint64
	for j := range p.lits {
		l := &p.lits[j]
		start := i - l.off
		if l.key == k && start >= 0 && start+len(l.lit) <= len(s) && s[start:start+len(l.lit)] == l.lit {
			found |= 1 << j
		}
	}
	return found
}

// rarestPair returns the offset of the byte pair of l least likely in log
// text, and its cost: spaces and frequent lower-case letters are
// everywhere, capitals and punctuation other than space much less so.
func rarestPair(l string) (off, cost int) {
	cost = 1 << 30
	for i := 0; i+1 < len(l); i++ {
		if c := byteCost(l[i]) + byteCost(l[i+1]); c < cost {
			off, cost = i, c
		}
	}
	return off, cost
}

func byteCost(c byte) int {
	switch {
	case c == ' ':
		return 8
	case c >= 'a' && c <= 'z':
		switch c {
		case 'e', 't', 'a', 'o', 'i', 'n', 's', 'r', 'h':
			return 5
		}
		return 3
	case c >= '0' && c <= '9':
		return 3
	}
	return 1
}
