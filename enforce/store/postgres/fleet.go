package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// publish records that sequence seq committed, waking waiters if it is
// news.
func (s *Store) publish(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.seen {
		return
	}
	s.seen = seq
	close(s.changed)
	s.changed = make(chan struct{})
}

// Wait returns the current change sequence once it is past after: at
// once if it already is, else when a commit on any replica sharing the
// database moves it (announced by NOTIFY), or with ctx's error. A
// bouncer stream that found nothing new waits here instead of polling.
func (s *Store) Wait(ctx context.Context, after int64) (int64, error) {
	for {
		s.mu.Lock()
		seen, ch := s.seen, s.changed
		s.mu.Unlock()
		if seen > after {
			return seen, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return seen, ctx.Err()
		}
	}
}

// Changed returns a channel that closes at the next change of the
// sequence this Store learns of, for callers that select on several.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// listen keeps a connection of its own LISTENing on the sequence's
// channel until ctx ends, reconnecting with backoff when it is lost.
// After each (re)connection it reads the sequence, as notifications sent
// while it was away are lost.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	defer close(s.done)
	const maxBackoff = 5 * time.Second
	backoff := 100 * time.Millisecond
	first := true
	for {
		err := s.listenOnce(ctx, cfg, func() {
			backoff = 100 * time.Millisecond
			if first {
				first = false
				close(s.listened)
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("decision notifications lost; reconnecting", "server", s.addr, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce connects, listens and relays notifications until the
// connection fails; up is called once LISTEN is in effect.
func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, up func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		return err
	}
	var cur int64
	if err := conn.QueryRow(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&cur); err != nil {
		return err
	}
	s.publish(cur)
	up()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		seq, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			// Not ours (someone NOTIFYs our channel): the sequence tells.
			if err := conn.QueryRow(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&seq); err != nil {
				return err
			}
		}
		s.publish(seq)
	}
}

// Job names for Singleton: the sweeps one replica of a fleet runs at a
// time.
const (
	JobExpire = "expire"
	JobPrune  = "prune"
)

// jobKey is the advisory lock key of a job: a hash, in the key space of
// moat's own locks ("moat:" prefix) so it stays clear of other users of
// the database's advisory locks.
func jobKey(job string) int64 {
	h := fnv.New64a()
	h.Write([]byte("moat:" + job))
	return int64(h.Sum64())
}

// Singleton runs fn if no other replica (or Store) runs the job of that
// name now, under an advisory lock (pg_try_advisory_lock) held by
// a connection of its own for fn's length; it returns whether fn ran, and
// fn's error. A replica that dies mid-job drops its connection and with
// it the lock, so the next replica's tick takes over.
func (s *Store) Singleton(ctx context.Context, job string, fn func(context.Context) error) (bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, s.wrap("job "+job, err)
	}
	key := jobKey(job)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Release()
		return false, s.wrap("job "+job, err)
	}
	if !got {
		conn.Release()
		return false, nil
	}
	ferr := fn(ctx)
	// Unlock even when ctx ended; if that fails, close the connection,
	// which releases the lock, rather than pool a connection holding it.
	var ok bool
	uerr := conn.QueryRow(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key).Scan(&ok)
	if uerr != nil || !ok {
		c := conn.Hijack()
		c.Close(context.WithoutCancel(ctx))
		if uerr == nil {
			uerr = fmt.Errorf("advisory lock %d was not held", key)
		}
		return true, errors.Join(ferr, s.wrap("job "+job+": unlock", uerr))
	}
	conn.Release()
	return true, ferr
}
