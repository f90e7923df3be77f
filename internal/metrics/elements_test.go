package metrics

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestElementCacheNeverHoldsAScrape: a count that takes long (a million
// elements) never holds a scrape back, runs once at a time, and serves the
// scrapes after it.
func TestElementCacheNeverHoldsAScrape(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	c := newElementCache(func(ctx context.Context) (map[string]int, error) {
		calls.Add(1)
		select {
		case <-release:
			return map[string]int{"ban4": 1_000_000}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, time.Nanosecond)
	// Scrapes while the first count runs: the figure is reported failed,
	// and no second count starts.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := c.get(ctx)
		cancel()
		if !errors.Is(err, errNotCounted) {
			t.Fatalf("get during the first count: %v, want errNotCounted", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d counts started, want 1", n)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.get(context.Background())
		if err == nil && got["ban4"] == 1_000_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count never served: %v %v", got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestElementCacheDropsFailedCounts: a failed count is reported, not
// hidden behind the previous figures.
func TestElementCacheDropsFailedCounts(t *testing.T) {
	fail := false
	var c *elementCache
	c = newElementCache(func(context.Context) (map[string]int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if fail {
			return nil, errors.New("netlink: no such table")
		}
		return map[string]int{"ban4": 3}, nil
	}, time.Nanosecond)
	if got, err := c.get(context.Background()); err != nil || got["ban4"] != 3 {
		t.Fatalf("first get: %v %v", got, err)
	}
	c.mu.Lock()
	fail = true
	c.mu.Unlock()
	// The next count is due after twenty times the last one took.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.get(context.Background())
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get after a failed count: %v, want the error", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
