package scenario

import (
	"regexp"
	"strings"
)

// prefilter is a literal test on one meta key that a filter starts with
// ("evt.Meta.log_type == 'ssh_failed-auth' && ..."). Most hub filters have
// one, so most events are rejected by a map lookup instead of the expr VM.
type prefilter struct {
	key    string
	values []string // the event's meta value must be one of these
}

func (p prefilter) ok() bool { return p.key != "" }

var (
	preEq = regexp.MustCompile(`^evt\.Meta\.([A-Za-z0-9_]+)\s*==\s*('[^'\\]*'|"[^"\\]*")`)
	preIn = regexp.MustCompile(`^evt\.Meta\.([A-Za-z0-9_]+)\s+in\s+\[\s*((?:(?:'[^'\\]*'|"[^"\\]*")\s*,?\s*)+)\]`)
	lit   = regexp.MustCompile(`'[^'\\]*'|"[^"\\]*"`)
)

// parsePrefilter finds the leading literal test of a filter, if it is safe
// to use: the test must be a conjunct of the whole filter, so the filter may
// hold no top-level "||", "or" or "?:" that could make it true without it.
func parsePrefilter(filter string) prefilter {
	f := strings.TrimSpace(filter)
	if hasTopLevelOr(f) {
		return prefilter{}
	}
	// "(a && b) && c": the leading group is a conjunct when what follows
	// it is one too.
	if strings.HasPrefix(f, "(") {
		if end := closingParen(f); end > 0 {
			rest := strings.TrimSpace(f[end+1:])
			if rest == "" || strings.HasPrefix(rest, "&&") || strings.HasPrefix(rest, "and ") || strings.HasPrefix(rest, "and\n") {
				return parsePrefilter(f[1:end])
			}
		}
		return prefilter{}
	}
	var key string
	var vals []string
	rest := ""
	if m := preEq.FindStringSubmatchIndex(f); m != nil {
		key = f[m[2]:m[3]]
		v := f[m[4]:m[5]]
		vals = []string{v[1 : len(v)-1]}
		rest = f[m[1]:]
	} else if m := preIn.FindStringSubmatchIndex(f); m != nil {
		key = f[m[2]:m[3]]
		for _, v := range lit.FindAllString(f[m[4]:m[5]], -1) {
			vals = append(vals, v[1:len(v)-1])
		}
		rest = f[m[1]:]
	} else {
		return prefilter{}
	}
	rest = strings.TrimSpace(rest)
	if rest != "" && !strings.HasPrefix(rest, "&&") && !strings.HasPrefix(rest, "and ") && !strings.HasPrefix(rest, "and\n") {
		return prefilter{}
	}
	return prefilter{key: key, values: vals}
}

// closingParen finds the parenthesis closing f[0], or -1.
func closingParen(f string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(f); i++ {
		c := f[i]
		if quote != 0 {
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"', '`':
			quote = c
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// hasTopLevelOr reports an "||", "or" or "?" outside brackets and quotes.
func hasTopLevelOr(f string) bool {
	depth := 0
	var quote byte
	for i := 0; i < len(f); i++ {
		c := f[i]
		if quote != 0 {
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"', '`':
			quote = c
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case '|':
			if depth == 0 && i+1 < len(f) && f[i+1] == '|' {
				return true
			}
		case '?':
			if depth == 0 {
				return true
			}
		case 'o':
			if depth == 0 && i+1 < len(f) && f[i+1] == 'r' &&
				(i == 0 || isSpace(f[i-1]) || f[i-1] == ')') &&
				(i+2 == len(f) || isSpace(f[i+2]) || f[i+2] == '(') {
				return true
			}
		}
	}
	return false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
