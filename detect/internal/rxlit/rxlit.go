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
