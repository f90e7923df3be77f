package enforce

import (
	"context"
	"time"
)

// expiryItem is a decision's expiry as the reconciler queues it. It names
// the prefix, not the decision: when it comes due, every decision on the
// prefix that has expired by then goes (see expire), so the queue, which
// holds an item per ban, need not hold the ID too.
type expiryItem struct {
	until stamp
	key   pkey
}

func (it expiryItem) when() stamp { return it.until }

// expiry4 is an IPv4 item, its key packed as the desired set packs it: 16
// bytes instead of 32, and IPv4 is nearly all of a big blocklist.
type expiry4 struct {
	until stamp
	key   uint64
}

func (it expiry4) when() stamp { return it.until }

// expiryHeap queues expiries earliest first, IPv4 and IPv6 apart so that
// each holds its own key size.
type expiryHeap struct {
	v4 blockHeap[expiry4]
	v6 blockHeap[expiryItem]
}

func (h *expiryHeap) len() int { return h.v4.n + h.v6.n }

func (h *expiryHeap) push(it expiryItem) {
	if it.key.v6 {
		h.v6.push(it)
		return
	}
	h.v4.push(expiry4{until: it.until, key: v4Key(it.key)})
}

// from4 reports whether the earliest item is in the IPv4 heap.
func (h *expiryHeap) from4() bool {
	return h.v6.n == 0 || h.v4.n > 0 && h.v4.top().until <= h.v6.top().until
}

func (h *expiryHeap) top() expiryItem {
	if h.from4() {
		it := h.v4.top()
		return expiryItem{until: it.until, key: fromV4Key(it.key)}
	}
	return h.v6.top()
}

func (h *expiryHeap) pop() expiryItem {
	if h.from4() {
		it := h.v4.pop()
		return expiryItem{until: it.until, key: fromV4Key(it.key)}
	}
	return h.v6.pop()
}

// blockHeap is a min-heap on when, written out rather than used through
// container/heap, whose interface boxes every pushed item: a million
// allocations when a million bans load. Items live in fixed-size blocks, so
// growing past a million items adds a block instead of copying tens of
// megabytes while a ban waits.
type blockHeap[T interface{ when() stamp }] struct {
	blocks [][]T
	n      int
}

const heapBlock = 1 << 13

func (h *blockHeap[T]) at(i int) *T { return &h.blocks[i/heapBlock][i%heapBlock] }

func (h *blockHeap[T]) top() T { return *h.at(0) }

func (h *blockHeap[T]) less(i, j int) bool { return (*h.at(i)).when() < (*h.at(j)).when() }

func (h *blockHeap[T]) swap(i, j int) {
	a, b := h.at(i), h.at(j)
	*a, *b = *b, *a
}

func (h *blockHeap[T]) push(it T) {
	if h.n == len(h.blocks)*heapBlock {
		h.blocks = append(h.blocks, make([]T, heapBlock))
	}
	*h.at(h.n) = it
	h.n++
	for i := h.n - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h.swap(parent, i)
		i = parent
	}
}

func (h *blockHeap[T]) pop() T {
	top := *h.at(0)
	h.n--
	*h.at(0) = *h.at(h.n)
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < h.n && h.less(l, small) {
			small = l
		}
		if r < h.n && h.less(r, small) {
			small = r
		}
		if small == i {
			break
		}
		h.swap(i, small)
		i = small
	}
	// Free blocks beyond two blocks of room: a ban and its expiry near a
	// block boundary should not allocate and free a block each time.
	if len(h.blocks)*heapBlock-h.n > 2*heapBlock {
		h.blocks[len(h.blocks)-1] = nil
		h.blocks = h.blocks[:len(h.blocks)-1]
	}
	return top
}

func (r *Reconciler) armExpiry(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	if r.expiries.len() == 0 {
		t.Reset(time.Hour)
		return
	}
	t.Reset(time.Until(r.expiries.top().until.time()))
}

// expireBatch bounds the expiries one pass handles: the pass runs on the
// reconciler's loop, so a new ban waits for it. 100k decisions expiring
// at once in one pass held new bans back 50-70 ms (p99, TestExpiryStall);
// in passes of 1,024, with the timer firing again at once for the rest,
// 1.6-8.5 ms (4,096: 1.8-20 ms).
const expireBatch = 1024

// expire drops decisions whose time has come, at most expireBatch of
// them. The kernel already stopped enforcing them (nft timeouts, XDP
// expiry in the map value); this only frees kernel memory and keeps the
// desired set exact.
func (r *Reconciler) expire(ctx context.Context, now time.Time) {
	var diff Diff
	touched := map[pkey]stamp{}
	cut := stampOf(now)
	var ids []int64
	for n := 0; n < expireBatch && r.expiries.len() > 0 && r.expiries.top().until <= cut; n++ {
		it := r.expiries.pop()
		c, ok := r.desired.get(it.key)
		if !ok {
			continue
		}
		// None: a stale item, its decisions re-issued with later expiries.
		if ids = r.expiredIDs(ids[:0], it.key, c, cut); len(ids) == 0 {
			continue
		}
		if _, ok := touched[it.key]; !ok {
			touched[it.key] = r.expiryOf(it.key, c)
		}
		for _, id := range ids {
			r.removeDecision(it.key.prefix(), id)
		}
	}
	for k, was := range touched {
		c, ok := r.desired.get(k)
		exp := r.expiryOf(k, c)
		switch {
		case !ok:
			diff.Delete = append(diff.Delete, k.prefix())
		case exp != was:
			diff.Set = append(diff.Set, Entry{Prefix: k.prefix(), Expiry: exp.time()})
		}
	}
	r.apply(ctx, diff, true)
}

// expiredIDs appends to ids the decisions covering k that expire at or
// before cut.
func (r *Reconciler) expiredIDs(ids []int64, k pkey, c cover, cut stamp) []int64 {
	if c.until != 0 && c.until <= cut {
		ids = append(ids, c.id)
	}
	if r.shared(k) {
		for id, u := range r.more[k] {
			if u != 0 && u <= cut {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// selfExpiring is implemented by backends whose kernel objects drop expired
// entries on their own (nft element timeouts): deleting those again would
// only fail on an element the kernel already removed.
type selfExpiring interface {
	ExpiresEntries() bool
}
