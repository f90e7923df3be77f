package metrics

import (
	"context"
	"errors"
	"sync"
	"time"
)

// elementCache holds the last count of a backend's kernel elements. Counting
// means dumping every set or map from the kernel, seconds of kernel time at
// a million elements, so a scrape reads the cache and, when the count is
// older than the refresh interval, starts a new one in the background. The
// next refresh also waits twenty times as long as the last count took, so
// counting never takes more than a twentieth of a CPU (a million-element
// hash set takes about 45 s to dump: the kernel walks the set from its
// start for every 32 KiB message). A scrape that starts a count waits for
// it a little (freshWait): small sets are then counted afresh, while a big
// dump finishes for a later scrape. Until the first count is done, scrapes
// report the figure as failed rather than wait.
type elementCache struct {
	read    func(context.Context) (map[string]int, error)
	every   time.Duration
	timeout time.Duration

	mu      sync.Mutex
	counts  map[string]int
	err     error
	next    time.Time     // earliest start of the next count
	running chan struct{} // closed when the count in progress ends
}

// freshWait is how long a scrape waits for the count it started before
// answering with the previous one.
const freshWait = 200 * time.Millisecond

func newElementCache(read func(context.Context) (map[string]int, error), every time.Duration) *elementCache {
	return &elementCache{read: read, every: every, timeout: max(5*time.Minute, 10*every)}
}

// get returns the last count, starting a new one if it is due.
func (c *elementCache) get(ctx context.Context) (map[string]int, error) {
	c.mu.Lock()
	running := c.running
	started := false
	if running == nil && !time.Now().Before(c.next) {
		running = make(chan struct{})
		c.running = running
		started = true
		go c.refresh(running)
	}
	c.mu.Unlock()
	if started {
		t := time.NewTimer(freshWait)
		select {
		case <-running:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil && c.err == nil {
		return nil, errNotCounted
	}
	return c.counts, c.err
}

var errNotCounted = errors.New("kernel elements not counted yet")

// refresh counts with its own deadline: the scrape that started it may end
// first, and the count is for the next scrapes anyway.
func (c *elementCache) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	counts, err := c.read(ctx)
	took := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	// A failed count drops the last one: a scrape should not show figures
	// it could not confirm.
	c.counts, c.err = counts, err
	if err != nil {
		c.counts = nil
	}
	c.next = time.Now().Add(max(c.every, 20*took))
	c.running = nil
	close(done)
}
