package exprenv

import (
	"regexp"
	"regexp/syntax"

	"github.com/moatsec/moat/detect/internal/rxlit"
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
	rxlit.Required(re, func(lit string) {
		if len(lit) > len(best) {
			best = lit
		}
	})
	return best
}
