package grok

import (
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// tokenCheck answers whether a whole token matches a pattern, remembering
// verdicts: addresses and dates come back line after line. Parse workers
// share a pattern, so the verdicts are in a concurrent map whose reads
// take no lock: a mutex here was a cache line every worker wrote per
// address.
type tokenCheck struct {
	rx string // checked to compile
	// whole: the token must be exactly the leftmost-first match of an
	// unanchored-at-end rx, not just matched by it.
	whole bool
	once  sync.Once
	re    *regexp.Regexp // rx, compiled on first use
	seen  sync.Map       // token -> bool
	size  atomic.Int64   // entries in seen, about
}

func newTokenCheck(rx string, whole bool) *tokenCheck {
	return &tokenCheck{rx: rx, whole: whole}
}

// tokenCheckMax bounds the verdicts kept: tokens are attacker-chosen, so
// seen starts over when full rather than growing.
const tokenCheckMax = 4096

func (t *tokenCheck) ok(s string) bool {
	if v, hit := t.seen.Load(s); hit {
		return v.(bool)
	}
	t.once.Do(func() { t.re = regexp.MustCompile(t.rx) })
	var v bool
	if t.whole {
		loc := t.re.FindStringIndex(s)
		v = loc != nil && loc[1] == len(s)
	} else {
		v = t.re.MatchString(s)
	}
	if t.size.Add(1) > tokenCheckMax {
		t.seen.Clear()
		t.size.Store(1)
	}
	t.seen.Store(strings.Clone(s), v)
	return v
}
