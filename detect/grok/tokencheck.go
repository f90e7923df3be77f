package grok

import (
	"regexp"
	"strings"
	"sync"
)

// tokenCheck answers whether a whole token matches a pattern, remembering
// verdicts: addresses and dates come back line after line.
type tokenCheck struct {
	re *regexp.Regexp
	// whole: the token must be exactly the leftmost-first match of an
	// unanchored-at-end re, not just matched by it.
	whole bool
	mu    sync.Mutex
	seen  map[string]bool
}

const tokenCheckMax = 4096

func (t *tokenCheck) ok(s string) bool {
	t.mu.Lock()
	v, hit := t.seen[s]
	t.mu.Unlock()
	if hit {
		return v
	}
	if t.whole {
		loc := t.re.FindStringIndex(s)
		v = loc != nil && loc[1] == len(s)
	} else {
		v = t.re.MatchString(s)
	}
	t.mu.Lock()
	if len(t.seen) >= tokenCheckMax {
		clear(t.seen)
	}
	t.seen[strings.Clone(s)] = v
	t.mu.Unlock()
	return v
}
