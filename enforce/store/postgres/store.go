// Package postgres is the store on PostgreSQL, for a fleet server whose
// replicas share one database. It offers the method set of the embedded
// SQLite store (package store), with the same logical schema and
// migration versions, so the decision service and the API take either.
//
// Where it differs from SQLite, because several processes write:
//   - Every transaction that adds or deletes decisions first takes the next
//     value of the change sequence (one row, updated), and holds its row
//     lock to the commit: sequence order is commit order across replicas,
//     which the bouncer stream's deltas rely on, and decision writers never
//     wait on each other's rows, so they cannot deadlock.
//   - A trigger on that row notifies channel moat_decisions; each Store
//     listens, so a stream waiting on one replica (Wait) wakes when
//     another inserts.
//   - Decision IDs come in blocks from a counter row, as two replicas must
//     never hand out the same ID.
//   - Escalation counts and "already banned" answers are queries, not
//     in-memory indexes: another replica's inserts must count too.
//   - Sweeps (expiry, prune, alert cap) work in batches ordered by id, and
//     Singleton runs a job on one replica at a time under an advisory lock.
//   - Concurrent inserts on one Store share a statement (group commit),
//     and so do concurrent duplicate checks and escalation counts.
//
// LISTEN and connection-held advisory locks need a server connection
// that stays theirs: behind a pooler, pool per client connection
// (PgBouncer's transaction pooling breaks both). Replicas' clocks set creation and expiry times, so keep them in
// sync (NTP), as for any fleet.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options tune Open.
type Options struct {
	// MaxConns bounds the pool; 0 means pgxpool's default (the larger of
	// 4 and the number of CPUs), and less than 3 means 3. The listener
	// has a connection of its own beside the pool.
	MaxConns int32
	// Logger reports what has no caller to return to: the listener's
	// reconnects. nil discards.
	Logger *slog.Logger
}

// Store is the PostgreSQL store. It is safe for concurrent use, and
// several Stores (in one process or many) may share a database.
type Store struct {
	pool *pgxpool.Pool
	// addr names the server in errors: host:port/database, never the
	// password.
	addr string
	log  *slog.Logger

	ids   ids
	group group
	// active and counts coalesce the reads deciding on pushed alerts.
	active lookups[activeKey, bool]
	counts lookups[countKey, int64]
	// badID hands out negative IDs when a block could not be reserved;
	// the insert refuses them (see ReserveIDs).
	badID atomic.Int64

	// seen is the highest change sequence this Store knows committed;
	// changed closes (and is replaced) when it grows.
	mu      sync.Mutex
	seen    int64
	changed chan struct{}

	stop     context.CancelFunc
	done     chan struct{}
	listened chan struct{}
}

// Open connects to the database dsn names (a postgres:// URL or key=value
// string), migrates its schema and starts listening for other replicas'
// changes. Errors name the server, never the password.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors already mask the password.
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	if opt.MaxConns > 0 {
		// Singleton holds a connection while its job uses others, and
		// the group flush needs one: fewer than 3 could wait for ever.
		cfg.MaxConns = max(opt.MaxConns, 3)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{addr: describe(cfg.ConnConfig), log: log, changed: make(chan struct{}), done: make(chan struct{}), listened: make(chan struct{})}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.wrap("open", err)
	}
	// The pool connects lazily: fail here, naming the server, rather than
	// on the first ban.
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.wrap("connect", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		return nil, s.wrap("migrate", err)
	}
	seq, err := s.Seq(ctx)
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	s.publish(seq)
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.listen(bg, cfg.ConnConfig.Copy())
	// A stream that waits right after Open must not miss a change made
	// before LISTEN took effect: wait for it, but not for ever.
	select {
	case <-s.listened:
	case <-s.done:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
		s.Close()
		return nil, s.wrap("listen", ctx.Err())
	}
	return s, nil
}

// Close stops the listener and closes the pool.
func (s *Store) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	s.pool.Close()
	return nil
}

// Addr is the server and database the store uses (host:port/database).
func (s *Store) Addr() string { return s.addr }

// describe names a connection's server for errors and logs.
func describe(c *pgx.ConnConfig) string {
	host := c.Host
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(c.Port))) + "/" + c.Database
}

// wrap gives err the server's name and the operation.
func (s *Store) wrap(op string, err error) error {
	return fmt.Errorf("postgres %s: %s: %w", s.addr, op, err)
}

// notFound reports whether err is pgx's "no rows".
func notFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
