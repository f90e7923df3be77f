package ascii

import (
	"regexp/syntax"
	"strings"
)

// Machine is the scratch space of Find; one goroutine at a time.
type Machine struct {
	stack   []frame
	visited []uint64
}

type frameKind uint8

const (
	frameBranch  frameKind = iota // resume at pc, pos
	frameRun                      // greedy run at pc: give back one byte, down to lo
	frameRunLazy                  // lazy run at pc: take one more byte, up to lo (the limit)
	frameSave                     // restore caps[pc] to pos
)

type frame struct {
	kind frameKind
	pc   int32
	pos  int32
	lo   int32
}

// A search first runs as a plain backtracker, which is fastest when it
// does not have to go back much. Past stepsPerByte steps per byte of input
// (plus stepsBase; a step is an instruction run or a byte a run looks at)
// it starts over remembering the (instruction, position) states that
// failed, as Go's backtracker does: a failure does not depend on how the
// state was reached, so the search stays linear in the input, at the cost
// of a bitmap of maxVisited bits at most. Beyond that Go's regexp takes
// over.
const (
	stepsPerByte = 4
	stepsBase    = 256
	maxVisited   = 1 << 20
	// maxKeptFrames bounds the stack a Machine keeps between searches.
	maxKeptFrames = 1 << 14
)

// Find looks for the leftmost-first match of p in s and writes its
// submatch positions to caps (len NumSlots; -1 for groups that did not
// take part). ok is false when Find cannot answer: s holds a non-ASCII
// byte, or is too long for the memory a hard search takes; the caller
// must then use Go's regexp.
func (p *Prog) Find(m *Machine, s string, caps []int) (matched, ok bool) {
	if !isASCII(s) || len(s) > 1<<30 {
		return false, false
	}
	// One odd line can grow the stack to millions of frames; the machine
	// does not keep that much.
	defer func() {
		if cap(m.stack) > maxKeptFrames {
			m.stack = nil
		}
	}()
	for i := range caps[:p.ncap] {
		caps[i] = -1
	}
	budget := stepsBase + stepsPerByte*len(s)
	matched, done := p.search(m, p.insts, s, caps, budget, nil)
	if done {
		return matched, true
	}
	n := p.memoLen * (len(s) + 1)
	if n > maxVisited {
		return false, false
	}
	words := (n + 63) / 64
	if cap(m.visited) < words {
		m.visited = make([]uint64, words)
	}
	visited := m.visited[:words]
	clear(visited)
	// The first search stopped with submatches still set.
	for i := range caps[:p.ncap] {
		caps[i] = -1
	}
	matched, _ = p.search(m, p.memoInsts(), s, caps, -1, visited)
	return matched, true
}

// search tries each start in turn and reports whether it matched, or done
// false when it ran past budget (-1: none). The states in visited failed
// whatever the start, so they are kept across starts.
func (p *Prog) search(m *Machine, insts []inst, s string, caps []int, budget int, visited []uint64) (matched, done bool) {
	for start := 0; start <= len(s); start++ {
		switch {
		case p.prefix != "":
			i := strings.Index(s[start:], p.prefix)
			if i < 0 {
				return false, true
			}
			start += i
		case !p.nullable:
			for start < len(s) && !p.first.has(s[start]) {
				start++
			}
			if start == len(s) {
				return false, true
			}
		}
		end, steps := run(m, insts, s, start, caps, budget, visited)
		if budget >= 0 {
			if steps > budget {
				return false, false
			}
			budget -= steps
		}
		if end >= 0 {
			caps[0], caps[1] = start, end
			return true, true
		}
		if p.textStart {
			break
		}
		if p.leadRun != nil {
			for start < len(s) && p.leadRun.has(s[start]) {
				start++
			}
		}
	}
	return false, true
}

// run tries a match starting at start and returns where it ends (-1 for
// none) and the steps it took.
func run(m *Machine, insts []inst, s string, start int, caps []int, budget int, visited []uint64) (end, steps int) {
	stack := m.stack[:0]
	pc, pos := 0, start
	n := len(s)
	stride := n + 1
	for {
		steps++
		if steps > budget && budget >= 0 {
			m.stack = stack
			return -1, steps
		}
		in := &insts[pc]
		if visited != nil {
			k := pc*stride + pos
			if visited[k>>6]&(1<<(k&63)) != 0 {
				in = &failInst
			} else {
				visited[k>>6] |= 1 << (k & 63)
			}
		}
		switch in.op {
		case opMatch:
			m.stack = stack
			return pos, steps
		case opByte:
			if pos < n && in.set.has(s[pos]) {
				pc++
				pos++
				continue
			}
		case opLit:
			if strings.HasPrefix(s[pos:], in.lit) {
				pc++
				pos += len(in.lit)
				continue
			}
		case opRun:
			limit := n
			if in.max >= 0 && pos+in.max < limit {
				limit = pos + in.max
			}
			e := pos
			for e < limit && in.set.has(s[e]) {
				e++
			}
			steps += e - pos
			if lo := pos + in.n; e >= lo {
				if e > lo {
					stack = append(stack, frame{kind: frameRun, pc: int32(pc), pos: int32(e), lo: int32(lo)})
				}
				pc++
				pos = e
				continue
			}
		case opRunLazy:
			lo := pos + in.n
			if lo <= n {
				e := pos
				for e < lo && in.set.has(s[e]) {
					e++
				}
				steps += e - pos
				if e == lo {
					limit := n
					if in.max >= 0 && pos+in.max < limit {
						limit = pos + in.max
					}
					if lo < limit {
						stack = append(stack, frame{kind: frameRunLazy, pc: int32(pc), pos: int32(lo), lo: int32(limit)})
					}
					pc++
					pos = lo
					continue
				}
			}
		case opSplit:
			stack = append(stack, frame{kind: frameBranch, pc: int32(in.y), pos: int32(pos)})
			pc = in.x
			continue
		case opJmp:
			pc = in.x
			continue
		case opSave:
			stack = append(stack, frame{kind: frameSave, pc: int32(in.n), pos: int32(caps[in.n])})
			caps[in.n] = pos
			pc++
			continue
		case opAssert:
			if holds(in.assert, s, pos) {
				pc++
				continue
			}
		}
		// Failure: resume at the latest choice still open.
		for {
			if len(stack) == 0 {
				m.stack = stack
				return -1, steps
			}
			f := &stack[len(stack)-1]
			switch f.kind {
			case frameSave:
				caps[f.pc] = int(f.pos)
				stack = stack[:len(stack)-1]
				continue
			case frameBranch:
				pc, pos = int(f.pc), int(f.pos)
				stack = stack[:len(stack)-1]
			case frameRun:
				f.pos--
				if follow := insts[f.pc].follow; follow != nil {
					p := f.pos
					for p > f.lo && !follow.has(s[p]) {
						p--
					}
					steps += int(f.pos - p)
					f.pos = p
				}
				pc, pos = int(f.pc)+1, int(f.pos)
				if f.pos <= f.lo {
					stack = stack[:len(stack)-1]
				}
			case frameRunLazy:
				in := &insts[f.pc]
				if !in.set.has(s[f.pos]) {
					stack = stack[:len(stack)-1]
					steps++
					continue
				}
				f.pos++
				pc, pos = int(f.pc)+1, int(f.pos)
				if f.pos >= f.lo {
					stack = stack[:len(stack)-1]
				}
			}
			break
		}
	}
}

// failInst stands for a state already known to fail.
var failInst = inst{op: opFail}

// holds evaluates an empty-width assertion at pos, as Go's regexp does on
// ASCII text.
func holds(op syntax.EmptyOp, s string, pos int) bool {
	switch op {
	case syntax.EmptyBeginText:
		return pos == 0
	case syntax.EmptyEndText:
		return pos == len(s)
	case syntax.EmptyBeginLine:
		return pos == 0 || s[pos-1] == '\n'
	case syntax.EmptyEndLine:
		return pos == len(s) || s[pos] == '\n'
	case syntax.EmptyWordBoundary, syntax.EmptyNoWordBoundary:
		before := pos > 0 && isWord(s[pos-1])
		after := pos < len(s) && isWord(s[pos])
		return (before != after) == (op == syntax.EmptyWordBoundary)
	}
	return false
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// isASCII reports whether s has only bytes below 0x80, eight at a time.
func isASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
