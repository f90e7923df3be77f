package server

import (
	"sync"
	"time"
)

// limiter is a token bucket per key (a reporter, a network) with a bound
// on the keys it remembers: a flood of distinct keys resets the table
// rather than growing it, which at worst forgives some buckets early.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, m: map[string]*bucket{}}
}

// allow takes n tokens from key's bucket at now, or none when it holds
// fewer. A zero rate means no limit.
func (l *limiter) allow(key string, n int, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= l.max {
			clear(l.m)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.m[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
