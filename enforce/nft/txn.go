package nft

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// txn queues element messages and commits when a transaction is full, but
// only between groups of messages that must commit together. It encodes
// into two buffers in turn: while the kernel commits one transaction, the
// next is encoded, so the encoding costs no kernel time. Commits still
// happen one after another, in order.
type txn struct {
	b     *Backend
	ctx   context.Context
	limit int
	cur   int // the batch being encoded
	// aborted: the sockets were replaced after an error.
	aborted bool
	// committing carries the result of the commit running in the
	// background; nil when none is.
	committing chan error
}

func (b *Backend) newTxn(ctx context.Context) *txn {
	return &txn{b: b, ctx: ctx, limit: msgsPerTxn}
}

func (t *txn) batch() *batch { return &t.b.batches[t.cur] }

// open starts a message of changes to set s; elements follow with
// t.batch().elem, and closeList ends it.
func (t *txn) open(add bool, s *nftables.Set) *batch {
	w := t.batch()
	w.open(add, byte(s.Table.Family), s.Table.Name, s.Name)
	return w
}

// boundary commits if the transaction is full.
func (t *txn) boundary(what string) error {
	if t.batch().msgs < t.limit {
		return nil
	}
	return t.commit(what, false)
}

// commit sends what is queued once the previous commit is done, and returns
// that previous commit's result. In the background while more is encoded
// (wait collects it); inline for the last one, which has nothing to overlap
// with: a single ban should not pay for a handoff.
func (t *txn) commit(what string, inline bool) error {
	w := t.batch()
	if w.empty() {
		return nil
	}
	if err := t.wait(); err != nil {
		return err
	}
	if err := t.ctx.Err(); err != nil {
		return t.abort(err)
	}
	t.cur = 1 - t.cur
	if inline {
		if err := t.b.commitBatch(w, what); err != nil {
			return t.abort(err)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- t.b.commitBatch(w, what) }()
	t.committing = done
	return nil
}

// commitBatch sends w as one transaction and empties it for reuse.
func (b *Backend) commitBatch(w *batch, what string) error {
	defer w.reset()
	if err := b.elems.send(w); err != nil {
		return fmt.Errorf("nft: commit %s in table %s: %w", what, b.table.Name, err)
	}
	return nil
}

// wait returns the result of the commit running in the background.
func (t *txn) wait() error {
	if t.committing == nil {
		return nil
	}
	err := <-t.committing
	t.committing = nil
	if err != nil {
		return t.abort(err)
	}
	return nil
}

// finish commits what is queued and waits for every commit.
func (t *txn) finish(what string) error {
	if err := t.commit(what, true); err != nil {
		return err
	}
	return t.wait()
}

// abort drops the sockets and the batches, with whatever they still had
// queued.
func (t *txn) abort(err error) error {
	if t.committing != nil {
		<-t.committing
		t.committing = nil
	}
	if !t.aborted {
		t.aborted = true
		t.b.reconnect()
	}
	return err
}
