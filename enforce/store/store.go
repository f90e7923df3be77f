// Package store keeps alerts, decisions and their history, bouncer API keys
// and the admin allowlist in one embedded SQLite file (<state_dir>/moat.db).
//
// Durability: the file runs in WAL mode with synchronous=NORMAL. A commit
// has reached the WAL in the page cache when it returns, so a decision whose
// insert returned survives the daemon being killed (kill -9, OOM, panic);
// only a power loss or kernel crash can lose the last commits before the
// next checkpoint, and those also wipe the kernel's ban sets, which the
// store exists to rebuild. Options.Durable switches to synchronous=FULL (an
// fsync per commit) for hosts that want power-loss durability and can pay
// a few milliseconds per write.
//
// Writes go through one connection, so SQLite's single-writer rule is met
// without busy retries, and every write transaction takes the next value of
// a change sequence: bouncer streams read deltas as "rows changed after
// sequence N", which is exact because sequence order is commit order.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver "sqlite3"
)

// FileName is the store's file inside the state directory.
const FileName = "moat.db"

// Sentinel errors.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrUnauthorized = errors.New("unknown API key")
)

// Options tune Open.
type Options struct {
	// Durable fsyncs every commit (synchronous=FULL) so acknowledged
	// writes also survive a power loss.
	Durable bool
	// Readers bounds concurrent read connections; 0 means 4.
	Readers int
}

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	path string
	w, r *sql.DB
	// idx serves the in-memory indexes' load and, until they are in, their
	// questions.
	idx    *sql.DB
	nextID atomic.Int64
	// counts answers the alert-to-kernel path's one question from
	// memory: it never waits for a connection API clients hold.
	counts *countIndex
	// active answers the decision service's "already banned for this
	// scenario" question from memory.
	active *activeIndex
	// indexed closes once Open's background load of counts and active
	// ends; indexOK tells it succeeded, indexErr why not. stop ends it
	// (nil until it started).
	indexed  chan struct{}
	indexOK  atomic.Bool
	indexErr error
	stop     context.CancelFunc
}

// Open opens (creating if needed) the store at path and migrates its schema.
func Open(ctx context.Context, path string, opt Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// The file holds bouncer key hashes: create it private before SQLite
	// creates it with the umask's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()
	sync := "NORMAL"
	if opt.Durable {
		sync = "FULL"
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_synchronous", sync)
	q.Set("_foreign_keys", "1")
	// auto_vacuum only takes effect on a new file, before the first table.
	q.Set("_auto_vacuum", "incremental")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	q.Set("_query_only", "1")
	q.Set("_txlock", "deferred")
	r, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	n := opt.Readers
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	// Every reader stays open: database/sql keeps two idle by default, and
	// opening a SQLite connection (file, WAL index, pragmas) took up to
	// 20 ms, which a ban waited for whenever alerts came in a burst.
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	// Open's index load and the questions asked meanwhile get their own
	// connections: API clients holding every reader must not delay them.
	idx, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	idx.SetMaxOpenConns(2)
	idx.SetConnMaxIdleTime(time.Second)
	s := &Store{path: path, w: w, r: r, idx: idx, counts: newCountIndex(), active: newActiveIndex(), indexed: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := openAll(ctx, r, n); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	var maxID sql.NullInt64
	if err := w.QueryRowContext(ctx, `SELECT max(id) FROM decisions`).Scan(&maxID); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.nextID.Store(maxID.Int64)
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.loadIndexes(bg)
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.indexed
	}
	return errors.Join(s.idx.Close(), s.r.Close(), s.w.Close())
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// ReserveIDs reserves n decision IDs and returns the first. IDs are handed
// out before the commit so a decision can reach the kernel while its row is
// still being written.
func (s *Store) ReserveIDs(n int) int64 {
	return s.nextID.Add(int64(n)) - int64(n) + 1
}

// write runs fn in a write transaction. seq is the change sequence this
// transaction owns (0 during the first migration, before the table exists).
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx, seq int64) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, `UPDATE seq SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&seq); err != nil && !strings.Contains(err.Error(), "no such table") {
		return err
	}
	if err := fn(tx, seq); err != nil {
		return err
	}
	return tx.Commit()
}

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

// openAll opens the pool's n connections now rather than on the first
// alerts.
func openAll(ctx context.Context, db *sql.DB, n int) error {
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if err := c.PingContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Counts summarizes the store for status output.
type Counts struct {
	ActiveDecisions int   `json:"active_decisions"`
	Decisions       int   `json:"decisions"`
	Alerts          int   `json:"alerts"`
	Bouncers        int   `json:"bouncers"`
	Allowlist       int   `json:"allowlist"`
	FileBytes       int64 `json:"file_bytes"`
}

// Counts counts rows and measures the file.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > ?)),
		(SELECT count(*) FROM decisions),
		(SELECT count(*) FROM alerts),
		(SELECT count(*) FROM bouncers),
		(SELECT count(*) FROM allowlist)`, time.Now().UnixNano()).Scan(&c.ActiveDecisions, &c.Decisions, &c.Alerts, &c.Bouncers, &c.Allowlist)
	if err != nil {
		return Counts{}, fmt.Errorf("count store rows: %w", err)
	}
	c.FileBytes = s.Size()
	return c, nil
}

// Size is the bytes the store takes on disk (database and WAL).
func (s *Store) Size() int64 {
	var n int64
	for _, p := range []string{s.path, s.path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}
