package nft

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
)

func isSingle(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// timeoutFor converts an absolute expiry into a kernel timeout, rounded up
// to the kernel's millisecond; ok is false when it has already passed.
func timeoutFor(exp, now time.Time) (time.Duration, bool) {
	if exp.IsZero() {
		return 0, true
	}
	d := exp.Sub(now)
	if d <= 0 {
		return 0, false
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond), true
}

// Apply implements enforce.Backend. Single addresses are added to ban4/ban6
// with a timeout of expiry-now; a changed expiry deletes and re-adds the
// element in one transaction so the kernel really takes the new timeout;
// deletes first re-add the element so a delete of something the kernel
// already expired cannot fail the transaction. Ranges are normalised into
// disjoint segments and only the segment difference against what the kernel
// holds is committed, in one transaction.
func (b *Backend) Apply(ctx context.Context, d enforce.Diff) (err error) {
	// classify notes each change in b.known before it is sent: after a
	// failure, known is only a guess.
	defer func() {
		if err != nil {
			b.knownComplete = false
		}
	}()
	t := b.newTxn(ctx)
	now := b.now()
	// Single addresses go out a chunk at a time while the diff is still
	// being read, so the kernel commits one transaction while the next is
	// classified and encoded.
	parts := &b.parts
	for f := range parts {
		parts[f].reset()
	}
	single := func(p netip.Prefix, ps pending, del bool) error {
		f := familyOf(p.Addr())
		return b.sendSingles(t, b.single[f], parts[f].classify(b, ps, del), false)
	}
	var rangeTouched [2]bool
	for _, e := range d.Set {
		p := model.Canonical(e.Prefix)
		if !p.IsValid() {
			return t.abort(fmt.Errorf("nft: invalid prefix %v", e.Prefix))
		}
		if isSingle(p) {
			_, live := timeoutFor(e.Expiry, now)
			if err := single(p, pending{addr: p.Addr(), expiry: e.Expiry}, !live); err != nil {
				return t.abort(err)
			}
			continue
		}
		f := familyOf(p.Addr())
		b.ranges[f][p] = e.Expiry
		rangeTouched[f] = true
	}
	for _, p := range d.Delete {
		p = model.Canonical(p)
		if !p.IsValid() {
			return t.abort(fmt.Errorf("nft: invalid prefix %v", p))
		}
		if isSingle(p) {
			if err := single(p, pending{addr: p.Addr()}, true); err != nil {
				return t.abort(err)
			}
			continue
		}
		f := familyOf(p.Addr())
		delete(b.ranges[f], p)
		rangeTouched[f] = true
	}
	for f := range parts {
		if err := b.sendSingles(t, b.single[f], &parts[f], true); err != nil {
			return t.abort(err)
		}
	}
	if err := b.applyRanges(t, rangeTouched); err != nil {
		return t.abort(err)
	}
	return t.finish("set elements")
}

// singleOps are the single-address changes of one family waiting to be
// sent, by how they are sent: fresh elements are added, refreshed ones
// re-added with their new timeout, deleted ones removed. Each list holds at
// most one chunk.
type singleOps struct{ fresh, refresh, del []pending }

func (o *singleOps) reset() {
	o.fresh, o.refresh, o.del = o.fresh[:0], o.refresh[:0], o.del[:0]
}

// classify files one single-address change and notes it in b.known at once
// (see Apply). The diff holds each prefix at most once.
func (o *singleOps) classify(b *Backend, p pending, del bool) *singleOps {
	switch {
	case del:
		b.known.del(p.addr)
		o.del = append(o.del, p)
	case b.known.add(p.addr) || !b.knownComplete:
		o.refresh = append(o.refresh, p)
	default:
		o.fresh = append(o.fresh, p)
	}
	return o
}

func chunkSize(s *nftables.Set) int {
	if s.KeyType.Bytes == 16 {
		return chunk6
	}
	return chunk4
}

// pending is a single element to send, with its absolute expiry.
type pending struct {
	addr   netip.Addr
	expiry time.Time
}

// elemTimeout is the timeout to send for an element. It is taken right
// before the message is encoded, because the kernel starts the clock when it
// commits: an Apply of many transactions must not stretch the last ones.
// fixed, when not zero, replaces it; noTimeout sends none (deletes).
func elemTimeout(expiry time.Time, fixed time.Duration, now time.Time) time.Duration {
	switch fixed {
	case noTimeout:
		return 0
	case 0:
		to, live := timeoutFor(expiry, now)
		if !live {
			// Passed while earlier transactions committed: the kernel's
			// smallest timeout lets it go at once.
			return time.Millisecond
		}
		return to
	}
	return fixed
}

// queueSingles encodes one message of single-address elements.
func (b *Backend) queueSingles(t *txn, add bool, s *nftables.Set, ps []pending, fixed time.Duration) {
	now := b.now()
	w := t.open(add, s)
	for _, p := range ps {
		w.elem(p.addr, elemTimeout(p.expiry, fixed, now), false)
	}
	w.closeList()
}

// sendSingles queues the lists of ops that hold a full chunk, or with all
// whatever they hold, and empties them for reuse.
func (b *Backend) sendSingles(t *txn, s *nftables.Set, ops *singleOps, all bool) error {
	n := chunkSize(s)
	due := func(l []pending) bool { return len(l) > 0 && (all || len(l) >= n) }
	if due(ops.fresh) {
		b.queueSingles(t, true, s, ops.fresh, 0)
		ops.fresh = ops.fresh[:0]
	}
	// add (no-op if present) + delete + add: the element ends with the new
	// timeout whether or not the kernel still had it.
	if due(ops.refresh) {
		b.queueSingles(t, true, s, ops.refresh, ensureTimeout)
		b.queueSingles(t, false, s, ops.refresh, noTimeout)
		b.queueSingles(t, true, s, ops.refresh, 0)
		ops.refresh = ops.refresh[:0]
	}
	if due(ops.del) {
		b.queueSingles(t, true, s, ops.del, ensureTimeout)
		b.queueSingles(t, false, s, ops.del, noTimeout)
		ops.del = ops.del[:0]
	}
	return t.boundary(s.Name + " elements")
}

// queueSegments encodes segments as interval elements: a start element
// with the timeout and an end element one past the last address (omitted
// when the segment reaches the top of the address space).
func queueSegments(t *txn, add bool, s *nftables.Set, segs []segment, now time.Time, fixed time.Duration) {
	w := t.open(add, s)
	for _, sg := range segs {
		w.elem(sg.start, elemTimeout(sg.expiry, fixed, now), false)
		if n := sg.end.Next(); n.IsValid() {
			w.elem(n, 0, true)
		}
	}
	w.closeList()
}

// applyRanges queues and commits, in one transaction, the segment changes
// that bring the kernel's interval sets to the desired ranges.
func (b *Backend) applyRanges(t *txn, touched [2]bool) error {
	queued := false
	now := b.now()
	for f := range b.ranged {
		if !touched[f] {
			continue
		}
		s := b.ranged[f]
		// The kernel is the truth for what to remove: segments expire and
		// people flush sets by hand.
		have, err := b.readSegments(s)
		if err != nil {
			return err
		}
		b.pruneRanges(family(f), now)
		want := normalize(b.ranges[f], now)
		del, add := diffSegments(have, want, expiryTolerance)
		// have holds no expired segments (the kernel drops those itself),
		// so each removal first re-adds the segment only to make the
		// delete safe against one that timed out since the read.
		n := chunkSize(s) / 2
		for c := range slices.Chunk(del, n) {
			queueSegments(t, true, s, c, now, ensureTimeout)
			queueSegments(t, false, s, c, now, noTimeout)
			queued = true
		}
		for c := range slices.Chunk(add, n) {
			queueSegments(t, true, s, c, now, 0)
			queued = true
		}
	}
	if !queued {
		return nil
	}
	return t.commit("range elements", false)
}

// pruneRanges forgets desired ranges whose expiry has passed: the kernel has
// dropped them, and the reconciler does not delete what expires on its own.
func (b *Backend) pruneRanges(f family, now time.Time) {
	for p, exp := range b.ranges[f] {
		if !exp.IsZero() && !exp.After(now) {
			delete(b.ranges[f], p)
		}
	}
}
