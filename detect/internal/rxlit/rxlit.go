// Package rxlit finds the literals every match of a regular expression
// contains, for the prefilters grok and the expression helpers put in
// front of a regexp.
package rxlit

import "regexp/syntax"

// Required calls visit with each case-sensitive literal that every match
// of re contains: literals along the concatenations, captures and
// repetitions of at least one that re must go through.
func Required(re *syntax.Regexp, visit func(lit string)) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			visit(string(re.Rune))
		}
	case syntax.OpCapture, syntax.OpPlus:
		Required(re.Sub[0], visit)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			Required(re.Sub[0], visit)
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			Required(s, visit)
		}
	}
}

// OneOf returns literals, each of at least minLen bytes, one of which
// every match of re contains: Required's literals, and across the
// branches of an alternation one literal per branch. It prefers the
// choice whose shortest literal is longest; nil when there is none.
func OneOf(re *syntax.Regexp, minLen int) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 || len(string(re.Rune)) < minLen {
			return nil
		}
		return []string{string(re.Rune)}
	case syntax.OpCapture, syntax.OpPlus:
		return OneOf(re.Sub[0], minLen)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return OneOf(re.Sub[0], minLen)
		}
	case syntax.OpConcat:
		var best []string
		for _, s := range re.Sub {
			if lits := OneOf(s, minLen); lits != nil && (best == nil || shortest(lits) > shortest(best)) {
				best = lits
			}
		}
		return best
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			lits := OneOf(s, minLen)
			if lits == nil {
				return nil
			}
			out = append(out, lits...)
		}
		return out
	}
	return nil
}

func shortest(lits []string) int {
	n := len(lits[0])
	for _, l := range lits[1:] {
		n = min(n, len(l))
	}
	return n
}
