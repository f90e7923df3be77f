package exprenv

import (
	"time"
)

// stash is one named key/value cache filled by parser `stash:` entries.
type stash struct {
	size  int
	ttl   time.Duration
	items map[string]stashItem
	order []string // insertion order, for evicting the oldest
}

type stashItem struct {
	value   string
	expires time.Time // zero: never
}

// CreateStash declares a stash; later declarations of the same name keep
// the first one's settings. size <= 0 means unbounded.
func (e *Env) CreateStash(name string, ttl time.Duration, size int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.stashes[name]; ok {
		return
	}
	e.stashes[name] = &stash{size: size, ttl: ttl, items: map[string]stashItem{}}
}

// SetInStash stores key=value in the named stash. now dates the entry for
// its TTL; the event time is passed so cold replays behave like live ones.
func (e *Env) SetInStash(name, key, value string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.stashes[name]
	if !ok {
		s = &stash{items: map[string]stashItem{}}
		e.stashes[name] = s
	}
	it := stashItem{value: value}
	if s.ttl > 0 && !now.IsZero() {
		it.expires = now.Add(s.ttl)
	}
	if _, ok := s.items[key]; !ok {
		s.order = append(s.order, key)
	}
	s.items[key] = it
	for s.size > 0 && len(s.items) > s.size && len(s.order) > 0 {
		old := s.order[0]
		s.order = s.order[1:]
		delete(s.items, old)
	}
}

// GetFromStash returns the value stored under key, if any.
func (e *Env) GetFromStash(name, key string) (string, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s, ok := e.stashes[name]
	if !ok {
		return "", false
	}
	it, ok := s.items[key]
	if !ok {
		return "", false
	}
	return it.value, true
}
