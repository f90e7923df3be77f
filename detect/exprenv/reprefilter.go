package exprenv

import (
	"regexp"
	"regexp/syntax"
)

// regexpPrefilter lets a regexp data file (bad_user_agents: hundreds of
// \bName\b) be tested with one Aho-Corasick pass: a regexp with a
// literal every match contains cannot match an input none of these
// literals occur in, so such inputs run only the regexps without one.
type regexpPrefilter struct {
	lits   *acMatcher
	always []*regexp.Regexp
}

func newRegexpPrefilter(res []*regexp.Regexp) *regexpPrefilter {
	var lits []string
	var always []*regexp.Regexp
	for _, re := range res {
		if l := requiredLiteral(re.String()); l != "" {
			lits = append(lits, l)
		} else {
			always = append(always, re)
		}
	}
	if len(lits) == 0 {
		return nil
	}
	return &regexpPrefilter{lits: newACMatcher(lits), always: always}
}

// candidates returns the regexps that may match s.
func (p *regexpPrefilter) candidates(s string, all []*regexp.Regexp) []*regexp.Regexp {
	if p.lits.match(s) {
		return all
	}
	return p.always
}

// requiredLiteral returns the longest case-sensitive literal every match
// of rx contains, or "".
func requiredLiteral(rx string) string {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return ""
	}
	best := ""
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			if r.Flags&syntax.FoldCase == 0 {
				if s := string(r.Rune); len(s) > len(best) {
					best = s
				}
			}
		case syntax.OpCapture, syntax.OpPlus:
			walk(r.Sub[0])
		case syntax.OpRepeat:
			if r.Min >= 1 {
				walk(r.Sub[0])
			}
		case syntax.OpConcat:
			for _, s := range r.Sub {
				walk(s)
			}
		}
	}
	walk(re)
	return best
}
