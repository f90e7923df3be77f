package grok

import (
	"regexp"
	"strings"
	"sync"
)

// tokenCheck answers whether a whole token matches a pattern, remembering
// verdicts: addresses and dates come back line after line.
type tokenCheck struct {
	rx string // checked to compile
	// whole: the token must be exactly the leftmost-first match of an
	// unanchored-at-end rx, not just matched by it.
	whole bool
	once  sync.Once
	re    *regexp.Regexp // rx, compiled on first use
	mu    sync.Mutex
	seen  map[string]bool
}

func newTokenCheck(rx string, whole bool) *tokenCheck {
	return &tokenCheck{rx: rx, whole: whole, seen: map[string]bool{}}
}

const tokenCheckMax = 4096

func (t *tokenCheck) ok(s string) bool {
	t.mu.Lock()
	v, hit := t.seen[s]
	t.mu.Unlock()
	if hit {
		return v
	}
	t.once.Do(func() { t.re = regexp.MustCompile(t.rx) })
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
