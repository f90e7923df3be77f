// Package ascii matches regular expressions on ASCII text by backtracking,
// with the submatches Go's regexp package gives (leftmost-first, Perl
// semantics), many times faster on the patterns log parsers are made of.
//
// Go's regexp decodes runes, steps through one instruction per character
// of a class repetition and clears a visited bitmap for every match; a
// line of 100 characters against a grok pattern costs it half a
// microsecond even when the pattern is simple. Here a class repetition is
// one instruction over a byte set, a literal is one comparison, and a
// match on ASCII text needs no decoding.
//
// A plain backtracker can take exponential time. Find runs one under a
// step budget linear in the input; past it, it starts over remembering
// the (instruction, position) states that failed, as Go's backtracker
// does, which bounds the work by the program size times the input length.
// Non-ASCII input, and input too long for that memory, is left to Go's
// regexp. Patterns whose loops can repeat an empty match are not
// compiled: only there does pruning revisited states change which match
// is found.
package ascii

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"unicode"
)

type opcode uint8

const (
	opFail    opcode = iota
	opMatch          // the whole pattern matched
	opByte           // one byte in set
	opLit            // the bytes of lit
	opRun            // min to max bytes in set, as many as possible first
	opRunLazy        // min to max bytes in set, as few as possible first
	opSplit          // go on at x; on failure at y
	opJmp            // go on at x
	opSave           // caps[n] = position
	opAssert         // the empty-width condition assert holds
)

type inst struct {
	op     opcode
	assert syntax.EmptyOp
	set    *byteSet
	lit    string
	n      int // save slot, or the least bytes a run takes
	max    int // the most bytes a run takes; -1 for no bound
	x, y   int
	// follow, on a greedy run, holds the bytes what comes after the run
	// must start with, when it cannot go on without one: giving back a
	// byte only to stop where the next one is not in follow fails at once,
	// so the backtracker gives back up to the next byte in follow instead.
	// nil when the rest can match empty or assert first.
	follow *byteSet
}

// byteSet is a set of ASCII bytes.
type byteSet [2]uint64

func (b *byteSet) has(c byte) bool { return c < 128 && b[c>>6]&(1<<(c&63)) != 0 }
func (b *byteSet) add(c rune)      { b[c>>6] |= 1 << (c & 63) }
func (b *byteSet) empty() bool     { return b[0] == 0 && b[1] == 0 }
func (b *byteSet) union(o *byteSet) {
	b[0] |= o[0]
	b[1] |= o[1]
}

// Prog is a compiled pattern. It holds no match state and may be shared.
type Prog struct {
	insts []inst
	// memo is the program with runs unrolled into loops over one byte,
	// for the search that remembers failed states: a run entered at many
	// positions rescans the same bytes, a loop's states are each
	// remembered. It is built from insts by the first search that needs
	// it: few lines do, and it is the larger program (26k instructions
	// against 17k for the hub's patterns).
	memoOnce sync.Once
	memo     []inst
	memoLen  int
	ncap     int // submatch slots, 2 per group including the whole match
	// prefix is a literal every match starts with; first holds the bytes
	// a match can start with, when it cannot be empty (nullable false).
	prefix    string
	first     byteSet
	nullable  bool
	textStart bool // the pattern can only match at the start of the text
	// leadRun is the unbounded run every match starts with (after saves
	// only), or nil. A failed try at start s, whose run reached e, tried
	// every way on from s to e: a try from inside the run tries a subset,
	// so the next start worth trying is past e.
	leadRun *byteSet
}

// ErrUnsupported marks patterns Compile leaves to Go's regexp.
var ErrUnsupported = errors.New("pattern not supported")

// maxInsts bounds the program a pattern expands to (repetitions of groups
// are unrolled).
const maxInsts = 1 << 16

// Compile compiles a pattern parsed with syntax.Perl (unsimplified).
func Compile(re *syntax.Regexp) (*Prog, error) {
	insts, err := compileInsts(re)
	if err != nil {
		return nil, err
	}
	memoLen := unrolledLen(insts)
	if memoLen > maxInsts {
		return nil, fmt.Errorf("%w: %d instructions unrolled", ErrUnsupported, memoLen)
	}
	setFollow(insts)
	p := &Prog{insts: insts, memoLen: memoLen, ncap: 2 * (re.MaxCap() + 1)}
	p.first, p.nullable = firstBytes(re)
	p.prefix = literalPrefix(re)
	p.textStart = startsText(re)
	for _, in := range p.insts {
		if in.op == opSave {
			continue
		}
		if (in.op == opRun || in.op == opRunLazy) && in.max < 0 {
			p.leadRun = in.set
		}
		break
	}
	return p, nil
}

func compileInsts(re *syntax.Regexp) ([]inst, error) {
	c := &compiler{}
	if err := c.emit(re); err != nil {
		return nil, err
	}
	c.add(inst{op: opMatch})
	if len(c.insts) > maxInsts {
		return nil, fmt.Errorf("%w: %d instructions", ErrUnsupported, len(c.insts))
	}
	return slices.Clone(c.insts), nil // without append's spare capacity
}

// NumSlots is the length Find needs for caps.
func (p *Prog) NumSlots() int { return p.ncap }

type compiler struct {
	insts []inst
}

func (c *compiler) add(i inst) int {
	c.insts = append(c.insts, i)
	return len(c.insts) - 1
}

func (c *compiler) emit(r *syntax.Regexp) error {
	if len(c.insts) > maxInsts {
		return fmt.Errorf("%w: program too large", ErrUnsupported)
	}
	switch r.Op {
	case syntax.OpNoMatch:
		c.add(inst{op: opFail})
	case syntax.OpEmptyMatch:
	case syntax.OpLiteral:
		c.literal(r)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		set := oneByte(r)
		if set.empty() {
			c.add(inst{op: opFail})
		} else {
			c.add(inst{op: opByte, set: set})
		}
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		c.add(inst{op: opAssert, assert: assertions[r.Op]})
	case syntax.OpCapture:
		c.add(inst{op: opSave, n: 2 * r.Cap})
		if err := c.emit(r.Sub[0]); err != nil {
			return err
		}
		c.add(inst{op: opSave, n: 2*r.Cap + 1})
	case syntax.OpConcat:
		for _, s := range r.Sub {
			if err := c.emit(s); err != nil {
				return err
			}
		}
	case syntax.OpAlternate:
		var ends []int
		for i, s := range r.Sub {
			split := -1
			if i < len(r.Sub)-1 {
				split = c.add(inst{op: opSplit})
				c.insts[split].x = len(c.insts)
			}
			if err := c.emit(s); err != nil {
				return err
			}
			if split >= 0 {
				ends = append(ends, c.add(inst{op: opJmp}))
				c.insts[split].y = len(c.insts)
			}
		}
		for _, j := range ends {
			c.insts[j].x = len(c.insts)
		}
	case syntax.OpStar:
		return c.repeat(r, r.Sub[0], 0, -1)
	case syntax.OpPlus:
		return c.repeat(r, r.Sub[0], 1, -1)
	case syntax.OpQuest:
		return c.repeat(r, r.Sub[0], 0, 1)
	case syntax.OpRepeat:
		return c.repeat(r, r.Sub[0], r.Min, r.Max)
	default:
		return fmt.Errorf("%w: %v", ErrUnsupported, r.Op)
	}
	return nil
}

// assertions maps the empty-width operators to what they assert.
var assertions = map[syntax.Op]syntax.EmptyOp{
	syntax.OpBeginLine:      syntax.EmptyBeginLine,
	syntax.OpEndLine:        syntax.EmptyEndLine,
	syntax.OpBeginText:      syntax.EmptyBeginText,
	syntax.OpEndText:        syntax.EmptyEndText,
	syntax.OpWordBoundary:   syntax.EmptyWordBoundary,
	syntax.OpNoWordBoundary: syntax.EmptyNoWordBoundary,
}

// literal emits a literal: one comparison when it is exact, one byte set
// per character when it folds case. A character with no ASCII form can
// never match.
func (c *compiler) literal(r *syntax.Regexp) {
	if r.Flags&syntax.FoldCase == 0 {
		var b strings.Builder
		for _, ch := range r.Rune {
			if ch >= 128 {
				c.add(inst{op: opFail})
				return
			}
			b.WriteByte(byte(ch))
		}
		c.add(inst{op: opLit, lit: b.String()})
		return
	}
	for _, ch := range r.Rune {
		set := foldSet(ch)
		if set.empty() {
			c.add(inst{op: opFail})
			return
		}
		c.add(inst{op: opByte, set: set})
	}
}

// repeat emits body repeated min to max times (max -1: no bound).
func (c *compiler) repeat(r, body *syntax.Regexp, min, max int) error {
	lazy := r.Flags&syntax.NonGreedy != 0
	if set := oneByte(body); set != nil {
		op := opRun
		if lazy {
			op = opRunLazy
		}
		c.add(inst{op: op, set: set, n: min, max: max})
		return nil
	}
	if (max < 0 || max > min) && nullable(body) {
		// A loop that can go round without consuming: Go prunes the
		// second visit of a state, which a backtracker cannot mimic.
		return fmt.Errorf("%w: repetition of an empty-matching group", ErrUnsupported)
	}
	for range min {
		if err := c.emit(body); err != nil {
			return err
		}
	}
	if a, rest, ok := runAlternative(body); ok && max < 0 && !lazy {
		return c.runLoop(a, rest)
	}
	switch {
	case max < 0:
		loop := c.add(inst{op: opSplit})
		if err := c.emit(body); err != nil {
			return err
		}
		c.add(inst{op: opJmp, x: loop})
		c.branch(loop, loop+1, len(c.insts), lazy)
	case max > min:
		var splits []int
		for range max - min {
			splits = append(splits, c.add(inst{op: opSplit}))
			if err := c.emit(body); err != nil {
				return err
			}
		}
		for _, s := range splits {
			c.branch(s, s+1, len(c.insts), lazy)
		}
	}
	return nil
}

// runLoop emits (?:A|B)* as A*(?:BA*)*, for a and rest from
// runAlternative: a run of A is one instruction, not a loop pushing a
// choice per byte; B cannot start where A matches, so the order of tries
// is the loop's.
func (c *compiler) runLoop(a *byteSet, rest *syntax.Regexp) error {
	c.add(inst{op: opRun, set: a, max: -1})
	loop := c.add(inst{op: opSplit})
	if err := c.emit(rest); err != nil {
		return err
	}
	c.add(inst{op: opRun, set: a, max: -1})
	c.add(inst{op: opJmp, x: loop})
	c.branch(loop, loop+1, len(c.insts), false)
	return nil
}

// runAlternative splits an alternation without captures into the one-byte
// alternatives (their union a) and the rest, when no other alternative
// can start with a byte of a or match empty (the quoted strings of log
// formats: [^"\\]|\\.).
func runAlternative(r *syntax.Regexp) (a *byteSet, rest *syntax.Regexp, ok bool) {
	if r.Op != syntax.OpAlternate || r.MaxCap() > 0 {
		return nil, nil, false
	}
	a = &byteSet{}
	var others []*syntax.Regexp
	for _, sub := range r.Sub {
		if set := oneByte(sub); set != nil {
			a.union(set)
		} else {
			others = append(others, sub)
		}
	}
	if a.empty() || len(others) == 0 {
		return nil, nil, false
	}
	rest = others[0]
	if len(others) > 1 {
		rest = &syntax.Regexp{Op: syntax.OpAlternate, Flags: r.Flags, Sub: others}
	}
	first, empty := firstBytes(rest)
	if empty || first[0]&a[0] != 0 || first[1]&a[1] != 0 {
		return nil, nil, false
	}
	return a, rest, true
}

// branch makes split try body before skipping it, or after when lazy.
func (c *compiler) branch(split, body, skip int, lazy bool) {
	branch(&c.insts[split], body, skip, lazy)
}

func branch(split *inst, body, skip int, lazy bool) {
	if lazy {
		body, skip = skip, body
	}
	split.x, split.y = body, skip
}

// unrolledSize is how many instructions in takes in the memo program: a
// run of min to max bytes is min bytes, then a loop (split, byte, jump)
// or max-min optional bytes (split, byte).
func unrolledSize(in inst) int {
	if in.op != opRun && in.op != opRunLazy {
		return 1
	}
	switch {
	case in.max < 0:
		return in.n + 3
	case in.max > in.n:
		return in.n + 2*(in.max-in.n)
	}
	return in.n
}

func unrolledLen(insts []inst) int {
	n := 0
	for _, in := range insts {
		n += unrolledSize(in)
	}
	return n
}

// setFollow sets follow on each greedy run of insts.
func setFollow(insts []inst) {
	const (
		unknown = iota
		busy
		known
	)
	state := make([]uint8, len(insts))
	sets := make([]byteSet, len(insts))
	bounded := make([]bool, len(insts))
	// first returns the bytes a match from pc can start with, and false
	// when it can get past pc without consuming one (an assertion, the
	// end, a way round a loop that consumes nothing).
	var first func(pc int) (byteSet, bool)
	first = func(pc int) (byteSet, bool) {
		switch state[pc] {
		case busy:
			return byteSet{}, false
		case known:
			return sets[pc], bounded[pc]
		}
		state[pc] = busy
		var set byteSet
		ok := true
		switch in := &insts[pc]; in.op {
		case opFail:
		case opByte:
			set = *in.set
		case opLit:
			if in.lit == "" {
				ok = false
				break
			}
			set.add(rune(in.lit[0]))
		case opRun, opRunLazy:
			set = *in.set
			if in.n == 0 {
				rest, rok := first(pc + 1)
				set.union(&rest)
				ok = rok
			}
		case opSplit:
			a, aok := first(in.x)
			b, bok := first(in.y)
			set = a
			set.union(&b)
			ok = aok && bok
		case opJmp:
			set, ok = first(in.x)
		case opSave:
			set, ok = first(pc + 1)
		default: // opMatch, opAssert
			ok = false
		}
		state[pc], sets[pc], bounded[pc] = known, set, ok
		return set, ok
	}
	for pc := range insts {
		if insts[pc].op != opRun {
			continue
		}
		if set, ok := first(pc + 1); ok {
			insts[pc].follow = &set
		}
	}
}

// memoInsts returns the memo program, building it on first use.
func (p *Prog) memoInsts() []inst {
	p.memoOnce.Do(func() { p.memo = unroll(p.insts, p.memoLen) })
	return p.memo
}

// unroll rewrites each run of insts (n instructions unrolled) as the
// loop over one byte that repeat emits for a group.
func unroll(insts []inst, n int) []inst {
	at := make([]int, len(insts)) // where each instruction starts
	pc := 0
	for i, in := range insts {
		at[i] = pc
		pc += unrolledSize(in)
	}
	out := make([]inst, 0, n)
	for _, in := range insts {
		switch in.op {
		case opRun, opRunLazy:
			lazy := in.op == opRunLazy
			b := inst{op: opByte, set: in.set}
			for range in.n {
				out = append(out, b)
			}
			switch {
			case in.max < 0:
				loop := len(out)
				out = append(out, inst{op: opSplit}, b, inst{op: opJmp, x: loop})
				branch(&out[loop], loop+1, len(out), lazy)
			case in.max > in.n:
				first := len(out)
				for range in.max - in.n {
					out = append(out, inst{op: opSplit}, b)
				}
				for s := first; s < len(out); s += 2 {
					branch(&out[s], s+1, len(out), lazy)
				}
			}
		case opSplit:
			in.x, in.y = at[in.x], at[in.y]
			out = append(out, in)
		case opJmp:
			in.x = at[in.x]
			out = append(out, in)
		default:
			out = append(out, in)
		}
	}
	return out
}

// oneByte returns the set of bytes r matches when it matches exactly one
// byte of ASCII text, else nil.
func oneByte(r *syntax.Regexp) *byteSet {
	set := &byteSet{}
	switch r.Op {
	case syntax.OpLiteral:
		if len(r.Rune) != 1 {
			return nil
		}
		if r.Flags&syntax.FoldCase != 0 {
			return foldSet(r.Rune[0])
		}
		if r.Rune[0] < 128 {
			set.add(r.Rune[0])
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(r.Rune); i += 2 {
			for ch := r.Rune[i]; ch <= r.Rune[i+1] && ch < 128; ch++ {
				set.add(ch)
			}
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		set[0], set[1] = ^uint64(0), ^uint64(0)
		if r.Op == syntax.OpAnyCharNotNL {
			set[0] &^= 1 << '\n'
		}
	default:
		return nil
	}
	return set
}

// foldSet is the ASCII bytes a case-folded character matches.
func foldSet(ch rune) *byteSet {
	set := &byteSet{}
	for f := ch; ; {
		if f < 128 {
			set.add(f)
		}
		if f = unicode.SimpleFold(f); f == ch {
			break
		}
	}
	return set
}

// nullable reports whether r can match the empty string.
func nullable(r *syntax.Regexp) bool {
	_, n := firstBytes(r)
	return n
}

// firstBytes returns the bytes a non-empty match of r can start with and
// whether r can match empty. Assertions count as empty: they only narrow
// where a match is.
func firstBytes(r *syntax.Regexp) (byteSet, bool) {
	switch r.Op {
	case syntax.OpNoMatch:
		return byteSet{}, false
	case syntax.OpLiteral:
		if len(r.Rune) == 0 {
			return byteSet{}, true
		}
		first := *oneByte(&syntax.Regexp{Op: syntax.OpLiteral, Rune: r.Rune[:1], Flags: r.Flags})
		return first, false
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return *oneByte(r), false
	case syntax.OpCapture:
		return firstBytes(r.Sub[0])
	case syntax.OpConcat:
		var set byteSet
		for _, s := range r.Sub {
			f, n := firstBytes(s)
			set.union(&f)
			if !n {
				return set, false
			}
		}
		return set, true
	case syntax.OpAlternate:
		var set byteSet
		null := false
		for _, s := range r.Sub {
			f, n := firstBytes(s)
			set.union(&f)
			null = null || n
		}
		return set, null
	case syntax.OpStar, syntax.OpQuest:
		f, _ := firstBytes(r.Sub[0])
		return f, true
	case syntax.OpPlus:
		return firstBytes(r.Sub[0])
	case syntax.OpRepeat:
		f, n := firstBytes(r.Sub[0])
		return f, n || r.Min == 0
	}
	// Empty matches and assertions.
	return byteSet{}, true
}

// literalPrefix returns the exact literal every match of r starts with.
func literalPrefix(r *syntax.Regexp) string {
	for {
		switch r.Op {
		case syntax.OpCapture:
			r = r.Sub[0]
			continue
		case syntax.OpConcat:
			if len(r.Sub) == 0 {
				return ""
			}
			r = r.Sub[0]
			continue
		case syntax.OpLiteral:
			if r.Flags&syntax.FoldCase != 0 {
				return ""
			}
			var b strings.Builder
			for _, ch := range r.Rune {
				if ch >= 128 {
					break
				}
				b.WriteByte(byte(ch))
			}
			return b.String()
		}
		return ""
	}
}

// startsText reports whether r begins with \A (or ^ without (?m)).
func startsText(r *syntax.Regexp) bool {
	for {
		switch r.Op {
		case syntax.OpBeginText:
			return true
		case syntax.OpCapture:
			r = r.Sub[0]
		case syntax.OpConcat:
			if len(r.Sub) == 0 {
				return false
			}
			r = r.Sub[0]
		default:
			return false
		}
	}
}
