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
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver "sqlite3"

	"github.com/moatsec/moat/internal/model"
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

// migrations are applied in order, each once; their index+1 is the version.
var migrations = []string{
	`CREATE TABLE seq (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
	INSERT INTO seq (id, value) VALUES (1, 0);
	CREATE TABLE alerts (
		id INTEGER PRIMARY KEY,
		created_at INTEGER NOT NULL,
		scenario TEXT NOT NULL,
		scope TEXT NOT NULL,
		value TEXT NOT NULL,
		events_count INTEGER NOT NULL,
		simulated INTEGER NOT NULL,
		data TEXT NOT NULL
	);
	CREATE INDEX alerts_created ON alerts (created_at);
	CREATE INDEX alerts_value ON alerts (value);
	CREATE TABLE decisions (
		id INTEGER PRIMARY KEY,
		alert_id INTEGER,
		value TEXT NOT NULL,
		scope TEXT NOT NULL,
		start_ip BLOB,
		end_ip BLOB,
		type TEXT NOT NULL,
		origin TEXT NOT NULL,
		scenario TEXT NOT NULL,
		reason TEXT NOT NULL,
		simulated INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		until INTEGER NOT NULL,
		deleted_at INTEGER,
		seq INTEGER NOT NULL,
		del_seq INTEGER
	);
	CREATE INDEX decisions_value ON decisions (value, created_at);
	CREATE INDEX decisions_until ON decisions (until) WHERE deleted_at IS NULL;
	CREATE INDEX decisions_seq ON decisions (seq);
	CREATE INDEX decisions_del_seq ON decisions (del_seq) WHERE del_seq IS NOT NULL;
	CREATE INDEX decisions_ranges ON decisions (start_ip, end_ip) WHERE deleted_at IS NULL AND scope = 'Range';
	CREATE INDEX decisions_deleted ON decisions (deleted_at) WHERE deleted_at IS NOT NULL;
	CREATE INDEX decisions_alert ON decisions (alert_id) WHERE alert_id IS NOT NULL;
	CREATE TABLE bouncers (
		name TEXT PRIMARY KEY,
		key_hash BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		last_seen INTEGER NOT NULL DEFAULT 0,
		last_seq INTEGER NOT NULL DEFAULT 0,
		last_ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE allowlist (
		value TEXT PRIMARY KEY,
		reason TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);`,
	// Bouncers are found by their key's hash: scanning every bouncer on
	// each request made any request, with any key, cost as much as the
	// number of bouncers.
	`CREATE INDEX bouncers_key ON bouncers (key_hash);`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrations table: %w", err)
	}
	var have int
	if err := s.w.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this moat (%d): downgrade refused", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
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

// bounds returns the first and last address of p as 16 bytes each, so
// SQLite's memcmp ordering of BLOBs compares addresses.
func bounds(p netip.Prefix) ([]byte, []byte) {
	p = p.Masked()
	first := p.Addr().As16()
	last := first
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	return first[:], last[:]
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

// Record is a stored decision with its bookkeeping.
type Record struct {
	model.Decision
	AlertID int64
	Created time.Time
	// Deleted is when the decision was deleted or swept as expired; zero
	// while active.
	Deleted time.Time
}

// Scope is the record's CrowdSec scope.
func (r Record) Scope() string { return model.ScopeOf(r.Value) }

func (s *Store) assignIDs(ds []model.Decision) {
	need := 0
	for _, d := range ds {
		if d.ID == 0 {
			need++
		}
	}
	if need == 0 {
		return
	}
	id := s.ReserveIDs(need)
	for i := range ds {
		if ds[i].ID == 0 {
			ds[i].ID = id
			id++
		}
	}
}

const insertDecision = `INSERT INTO decisions (id, alert_id, value, scope, start_ip, end_ip, type, origin, scenario, reason, simulated, created_at, until, seq)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func insertDecisions(ctx context.Context, tx *sql.Tx, seq, alertID int64, now time.Time, ds []model.Decision) error {
	if len(ds) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, insertDecision)
	if err != nil {
		return err
	}
	defer st.Close()
	var aid any
	if alertID != 0 {
		aid = alertID
	}
	for _, d := range ds {
		if !d.Value.IsValid() {
			return fmt.Errorf("decision %d: invalid value", d.ID)
		}
		p := model.Canonical(d.Value)
		// Only ranges need bounds: single addresses are found by value,
		// and leaving them NULL saves 32 bytes a row.
		var first, last []byte
		if model.ScopeOf(p) == model.ScopeRange {
			first, last = bounds(p)
		}
		typ := d.Type
		if typ == "" {
			typ = "ban"
		}
		if _, err := st.ExecContext(ctx, d.ID, aid, model.ValueString(p), model.ScopeOf(p), first, last, typ, string(d.Origin), d.Scenario, d.Reason, d.Simulated, now.UnixNano(), nanos(d.Until), seq); err != nil {
			return fmt.Errorf("insert decision %d: %w", d.ID, err)
		}
	}
	return nil
}

// InsertDecisions stores decisions, giving those with a zero ID a fresh
// one (ds is updated in place). It returns after the commit.
func (s *Store) InsertDecisions(ctx context.Context, ds []model.Decision) error {
	s.assignIDs(ds)
	now := time.Now()
	var seq int64
	err := s.write(ctx, func(tx *sql.Tx, sq int64) error {
		seq = sq
		return insertDecisions(ctx, tx, seq, 0, now, ds)
	})
	if err != nil {
		return fmt.Errorf("store decisions: %w", err)
	}
	s.counted(seq, now, ds)
	return nil
}

// InsertAlert stores an alert with the decisions it produced (IDs assigned
// as by InsertDecisions) in one transaction and returns the alert's ID.
func (s *Store) InsertAlert(ctx context.Context, a model.Alert, ds []model.Decision) (int64, error) {
	s.assignIDs(ds)
	data, err := encodeAlert(a)
	if err != nil {
		return 0, fmt.Errorf("store alert: %w", err)
	}
	now := time.Now()
	var id, seq int64
	err = s.write(ctx, func(tx *sql.Tx, sq int64) error {
		seq = sq
		res, err := tx.ExecContext(ctx, `INSERT INTO alerts (created_at, scenario, scope, value, events_count, simulated, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			now.UnixNano(), a.Scenario, a.Scope, a.Value, a.EventsCount, a.Simulated, data)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		return insertDecisions(ctx, tx, seq, id, now, ds)
	})
	if err != nil {
		return 0, fmt.Errorf("store alert %s %s: %w", a.Scenario, a.Value, err)
	}
	s.counted(seq, now, ds)
	s.active.change(seq, ds, false)
	return id, nil
}

// counted adds committed decisions to the count index.
func (s *Store) counted(seq int64, created time.Time, ds []model.Decision) {
	values := make([]string, len(ds))
	for i, d := range ds {
		values[i] = model.ValueString(d.Value)
	}
	s.counts.add(seq, created.UnixNano(), values)
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

// Filter selects decisions. Zero fields match everything.
type Filter struct {
	ID int64
	// IP matches decisions whose value contains the address.
	IP netip.Addr
	// Range matches decisions whose value contains the whole range.
	Range netip.Prefix
	// Value matches the stored value exactly (an address or a CIDR).
	Value string
	// Scope matches case-insensitively ("ip", "Range").
	Scope    string
	Type     string
	Origin   string
	Scenario string // substring
	// History includes deleted and expired decisions.
	History bool
	// Limit caps the result (newest first); 0 means no cap.
	Limit int
}

// Empty reports whether f selects everything.
func (f Filter) Empty() bool {
	return f.ID == 0 && !f.IP.IsValid() && !f.Range.IsValid() && f.Value == "" && f.Scope == "" && f.Type == "" && f.Origin == "" && f.Scenario == ""
}

// coveringIDs selects the decisions covering an address or range: the
// exact value through its index, and the active ranges containing it through
// theirs. Written as two subqueries because SQLite would not use both
// indexes for an OR and would scan every active decision instead.
const coveringIDs = `id IN (SELECT id FROM decisions WHERE value = ?
	UNION ALL SELECT id FROM decisions WHERE deleted_at IS NULL AND scope = 'Range' AND start_ip <= ? AND end_ip >= ?)`

func (f Filter) where(now time.Time) (string, []any) {
	var conds []string
	var args []any
	if !f.History {
		conds = append(conds, `deleted_at IS NULL AND (until = 0 OR until > ?)`)
		args = append(args, now.UnixNano())
	}
	if f.ID != 0 {
		conds = append(conds, `id = ?`)
		args = append(args, f.ID)
	}
	if f.IP.IsValid() {
		// A single address matches by value (index), ranges by bounds
		// (a small partial index).
		a := f.IP.Unmap()
		b, _ := bounds(netip.PrefixFrom(a, a.BitLen()))
		conds = append(conds, coveringIDs)
		args = append(args, a.String(), b, b)
	}
	if f.Range.IsValid() {
		p := model.Canonical(f.Range)
		first, last := bounds(p)
		conds = append(conds, coveringIDs)
		args = append(args, model.ValueString(p), first, last)
	}
	if f.Value != "" {
		conds = append(conds, `value = ?`)
		args = append(args, f.Value)
	}
	if f.Scope != "" {
		conds = append(conds, `scope = ? COLLATE NOCASE`)
		args = append(args, f.Scope)
	}
	if f.Type != "" {
		conds = append(conds, `type = ?`)
		args = append(args, f.Type)
	}
	if f.Origin != "" {
		conds = append(conds, `origin = ?`)
		args = append(args, f.Origin)
	}
	if f.Scenario != "" {
		conds = append(conds, `instr(scenario, ?) > 0`)
		args = append(args, f.Scenario)
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

const recordCols = `id, coalesce(alert_id, 0), value, type, origin, scenario, reason, simulated, created_at, until, coalesce(deleted_at, 0)`

type scanner interface{ Scan(...any) error }

func scanRecord(sc scanner) (Record, error) {
	var r Record
	var value, origin string
	var created, until, deleted int64
	if err := sc.Scan(&r.ID, &r.AlertID, &value, &r.Type, &origin, &r.Scenario, &r.Reason, &r.Simulated, &created, &until, &deleted); err != nil {
		return Record{}, err
	}
	p, err := model.ParseValue(value)
	if err != nil {
		return Record{}, fmt.Errorf("decision %d: bad stored value %q: %w", r.ID, value, err)
	}
	r.Value = p
	r.Origin = model.Origin(origin)
	r.Created, r.Until, r.Deleted = fromNanos(created), fromNanos(until), fromNanos(deleted)
	return r, nil
}

// ListDecisions returns the decisions f selects, newest first.
func (s *Store) ListDecisions(ctx context.Context, f Filter) ([]Record, error) {
	where, args := f.where(time.Now())
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("list decisions: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	return out, nil
}

// Active returns every decision in force at now, simulated ones included.
func (s *Store) Active(ctx context.Context, now time.Time) ([]model.Decision, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordCols+` FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > ?) ORDER BY id`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("active decisions: %w", err)
	}
	defer rows.Close()
	var out []model.Decision
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("active decisions: %w", err)
		}
		out = append(out, r.Decision)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("active decisions: %w", err)
	}
	return out, nil
}

// DeleteDecisions marks the active decisions f selects as deleted and
// returns them. An empty filter deletes nothing: callers that mean "all"
// say so with DeleteAll.
func (s *Store) DeleteDecisions(ctx context.Context, f Filter) ([]model.Decision, error) {
	if f.Empty() {
		return nil, nil
	}
	return s.deleteWhere(ctx, f)
}

// DeleteIDs marks the active decisions with these IDs deleted and returns
// them.
func (s *Store) DeleteIDs(ctx context.Context, ids []int64) ([]model.Decision, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := time.Now()
	var out []model.Decision
	var delSeq int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		st, err := tx.PrepareContext(ctx, `UPDATE decisions SET deleted_at = ?, del_seq = ? WHERE id = ? AND deleted_at IS NULL RETURNING `+recordCols)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			r, err := scanRecord(st.QueryRowContext(ctx, now.UnixNano(), seq, id))
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, r.Decision)
		}
		delSeq = seq
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete decisions: %w", err)
	}
	s.active.change(delSeq, out, true)
	return out, nil
}

// DeleteAll marks every active decision deleted and returns them.
func (s *Store) DeleteAll(ctx context.Context) ([]model.Decision, error) {
	return s.deleteWhere(ctx, Filter{})
}

func (s *Store) deleteWhere(ctx context.Context, f Filter) ([]model.Decision, error) {
	f.History = false
	now := time.Now()
	where, args := f.where(now)
	var out []model.Decision
	var delSeq int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		rows, err := tx.QueryContext(ctx, `UPDATE decisions SET deleted_at = ?, del_seq = ? WHERE `+where+` RETURNING `+recordCols,
			append([]any{now.UnixNano(), seq}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			out = append(out, r.Decision)
		}
		delSeq = seq
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("delete decisions: %w", err)
	}
	s.active.change(delSeq, out, true)
	return out, nil
}

// Expire marks decisions that ran out by now as deleted, so streams report
// them, and returns how many it marked.
func (s *Store) Expire(ctx context.Context, now time.Time) (int, error) {
	// Read first: most calls find nothing and need no write transaction.
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, now.UnixNano()).Scan(&n); err != nil {
		return 0, fmt.Errorf("expire decisions: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var marked int64
	err := s.write(ctx, func(tx *sql.Tx, seq int64) error {
		res, err := tx.ExecContext(ctx, `UPDATE decisions SET deleted_at = until, del_seq = ? WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, seq, now.UnixNano())
		if err != nil {
			return err
		}
		marked, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire decisions: %w", err)
	}
	return int(marked), nil
}

// CountDecisions counts the decisions ever taken on value (active, expired
// or deleted, within the retention) created at or after since, from
// memory: it runs on the alert-to-kernel path.
func (s *Store) CountDecisions(ctx context.Context, value string, since time.Time) (int, error) {
	if !s.indexesReady() {
		return s.countFromTable(ctx, value, since)
	}
	return s.counts.count(value, nanos(since)), nil
}

// streamCols are the columns a bouncer needs: fewer columns is fewer cgo
// calls per row, which is most of a million-row startup pull.
const streamCols = `id, value, type, origin, scenario, reason, simulated, until`

// scanStreamID scans streamCols; the paging key is the id.
func scanStreamID(rows *sql.Rows, r *Record, key *int64) error {
	if err := scanStream(rows, r); err != nil {
		return err
	}
	*key = r.ID
	return nil
}

// scanStreamKey scans streamCols followed by the paging key.
func scanStreamKey(rows *sql.Rows, r *Record, key *int64) error {
	return scanStream(rows, r, key)
}

func scanStream(rows *sql.Rows, r *Record, extra ...any) error {
	var value, origin string
	var until int64
	if err := rows.Scan(append([]any{&r.ID, &value, &r.Type, &origin, &r.Scenario, &r.Reason, &r.Simulated, &until}, extra...)...); err != nil {
		return err
	}
	p, err := model.ParseValue(value)
	if err != nil {
		return fmt.Errorf("decision %d: bad stored value %q: %w", r.ID, value, err)
	}
	r.Value, r.Origin, r.Until = p, model.Origin(origin), fromNanos(until)
	return nil
}

// Change says whether a streamed decision is new or deleted.
type Change int

const (
	New Change = iota
	Deleted
)

// DefaultPage is how many decisions a paged read holds in memory.
const DefaultPage = 256

// readPage appends to dst the rows q selects, scanned by scan, and closes
// them before returning. key is what scan read past the record's columns
// from the last row (the keyset paging key), if anything.
func (s *Store) readPage(ctx context.Context, dst []Record, scan func(*sql.Rows, *Record, *int64) error, q string, args ...any) (_ []Record, key int64, err error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return dst, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var r Record
		if err := scan(rows, &r, &key); err != nil {
			return dst, 0, err
		}
		dst = append(dst, r)
	}
	return dst, key, rows.Err()
}

func scanFull(rows *sql.Rows, r *Record, _ *int64) error {
	rec, err := scanRecord(rows)
	*r = rec
	return err
}

// ListPages calls fn with the decisions f selects, newest first, at most
// size (0 means DefaultPage) at a time; f.Limit caps the total. Each page
// is read and its rows closed before fn sees it, so fn may write to a slow
// client without pinning a connection of the pool or a snapshot of the
// file. fn must not keep the slice.
func (s *Store) ListPages(ctx context.Context, f Filter, size int, fn func([]Record) error) error {
	if size <= 0 {
		size = DefaultPage
	}
	where, args := f.where(time.Now())
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` AND id < ? ORDER BY id DESC LIMIT ?`
	before, left := int64(math.MaxInt64), f.Limit
	page := make([]Record, 0, size)
	for {
		n := size
		if f.Limit > 0 {
			n = min(n, left)
		}
		var err error
		page, _, err = s.readPage(ctx, page[:0], scanFull, q, append(slices.Clip(args), before, n)...)
		if err != nil {
			return fmt.Errorf("list decisions: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		left -= len(page)
		if len(page) < n || f.Limit > 0 && left <= 0 {
			return nil
		}
		before = page[len(page)-1].ID
	}
}

// The stream's pages. Startup: active at cur and now (added by then, not
// deleted by then, not expired now); the unary + keeps SQLite off the
// indexes, as walking the table in rowid order gives id order without
// sorting a million rows. Deltas: keyed by (sequence, id), the index
// order, since ordering by id would make SQLite scan the whole table to
// skip a sort.
const (
	streamStartup = `SELECT ` + streamCols + ` FROM decisions WHERE id > ? AND +seq <= ? AND (+del_seq IS NULL OR +del_seq > ?) AND (+until = 0 OR +until > ?) ORDER BY id LIMIT ?`
	streamNew     = `SELECT ` + streamCols + `, seq FROM decisions WHERE seq > ? AND seq <= ? AND (seq, id) > (?, ?) AND (del_seq IS NULL OR del_seq > ?) AND (until = 0 OR until > ?) ORDER BY seq, id LIMIT ?`
	streamDeleted = `SELECT ` + streamCols + `, del_seq FROM decisions WHERE del_seq > ? AND del_seq <= ? AND (del_seq, id) > (?, ?) AND seq <= ? ORDER BY del_seq, id LIMIT ?`
)

// Stream calls emit with what a bouncer that saw everything up to sequence
// after must learn, at most size (0 means DefaultPage) decisions at a
// time: with startup, every decision active now; else the decisions added
// and deleted since, new ones first. It returns the sequence the bouncer
// is then up to.
//
// No snapshot is held while emit runs, as emit writes to a client that may
// stop reading: the current sequence is read first and every page selects
// rows as they were at that sequence (each row carries the sequences that
// added and deleted it), so the pages read apart add up to one consistent
// view, and what changes meanwhile is the next delta's. Each page's rows
// are closed before emit sees it; emit must not keep the slice. Records
// carry the decision only (no alert or bookkeeping times).
func (s *Store) Stream(ctx context.Context, after int64, startup bool, now time.Time, size int, emit func(Change, []Record) error) (int64, error) {
	if size <= 0 {
		size = DefaultPage
	}
	cur, err := s.Seq(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	page := make([]Record, 0, size)
	// each reads q page by page; args(k1, k2) are q's arguments given the
	// key the previous page ended at, starting from (k1, k2).
	each := func(ch Change, scan func(*sql.Rows, *Record, *int64) error, k1, k2 int64, q string, args func(k1, k2 int64) []any) error {
		for {
			var err error
			page, k1, err = s.readPage(ctx, page[:0], scan, q, append(args(k1, k2), size)...)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				return nil
			}
			if err := emit(ch, page); err != nil {
				return err
			}
			if len(page) < size {
				return nil
			}
			k2 = page[len(page)-1].ID
		}
	}
	nowNs := now.UnixNano()
	if startup {
		// Keyed by id alone.
		err = each(New, scanStreamID, 0, 0, streamStartup,
			func(_, id int64) []any { return []any{id, cur, cur, nowNs} })
	} else {
		// The key starts at (after, max): the first page begins past
		// sequence after.
		err = each(New, scanStreamKey, after, math.MaxInt64, streamNew,
			func(seq, id int64) []any { return []any{after, cur, seq, id, cur, nowNs} })
		if err == nil {
			err = each(Deleted, scanStreamKey, after, math.MaxInt64, streamDeleted,
				func(seq, id int64) []any { return []any{after, cur, seq, id, after} })
		}
	}
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	return cur, nil
}

// Seq is the current change sequence.
func (s *Store) Seq(ctx context.Context) (int64, error) {
	var cur int64
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM seq WHERE id = 1`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("read sequence: %w", err)
	}
	return cur, nil
}

// AlertRecord is a stored alert.
type AlertRecord struct {
	ID        int64
	Created   time.Time
	Alert     model.Alert
	Decisions []int64
}

// AlertFilter selects alerts; zero fields match everything.
type AlertFilter struct {
	Scenario string // substring
	Value    string
	Since    time.Time
	Limit    int // 0 means 100
}

// ListAlerts returns alerts, newest first, each with the IDs of the
// decisions it produced.
func (s *Store) ListAlerts(ctx context.Context, f AlertFilter) ([]AlertRecord, error) {
	// The decisions through their alert_id index, one subquery a row.
	q := `SELECT id, created_at, data, (SELECT group_concat(d.id) FROM decisions d WHERE d.alert_id = alerts.id) FROM alerts WHERE created_at >= ?`
	args := []any{nanos(f.Since)}
	if f.Scenario != "" {
		q += ` AND instr(scenario, ?) > 0`
		args = append(args, f.Scenario)
	}
	if f.Value != "" {
		q += ` AND value = ?`
		args = append(args, f.Value)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	var out []AlertRecord
	for rows.Next() {
		var a AlertRecord
		var created int64
		var data []byte
		var ids sql.NullString
		if err := rows.Scan(&a.ID, &created, &data, &ids); err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		a.Created = fromNanos(created)
		if err := decodeAlert(data, &a.Alert); err != nil {
			return nil, fmt.Errorf("alert %d: %w", a.ID, err)
		}
		for _, v := range strings.Split(ids.String, ",") {
			if id, err := strconv.ParseInt(v, 10, 64); err == nil {
				a.Decisions = append(a.Decisions, id)
			}
		}
		slices.Sort(a.Decisions)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// GetAlert returns one alert with the IDs of its decisions.
func (s *Store) GetAlert(ctx context.Context, id int64) (AlertRecord, error) {
	a := AlertRecord{ID: id}
	var created int64
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT created_at, data FROM alerts WHERE id = ?`, id).Scan(&created, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	a.Created = fromNanos(created)
	if err := decodeAlert(data, &a.Alert); err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM decisions WHERE alert_id = ? ORDER BY id`, id)
	if err != nil {
		return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d int64
		if err := rows.Scan(&d); err != nil {
			return AlertRecord{}, fmt.Errorf("alert %d: %w", id, err)
		}
		a.Decisions = append(a.Decisions, d)
	}
	return a, rows.Err()
}

// Bouncer is a registered API client. The key itself is never stored.
type Bouncer struct {
	Name      string
	Created   time.Time
	LastSeen  time.Time
	LastSeq   int64
	LastIP    string
	UserAgent string
}

// hashKey is the stored form of an API key.
func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// AddBouncer registers a bouncer and returns its API key, the only time the
// key is available.
func (s *Store) AddBouncer(ctx context.Context, name string) (string, error) {
	if name == "" || len(name) > 128 {
		return "", fmt.Errorf("bouncer name must be 1 to 128 characters")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("bouncer key: %w", err)
	}
	key := hex.EncodeToString(raw[:])
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM bouncers WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("bouncer %q: %w", name, ErrExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO bouncers (name, key_hash, created_at) VALUES (?, ?, ?)`, name, hashKey(key), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("add bouncer: %w", err)
	}
	return key, nil
}

// DeleteBouncer removes a bouncer; its key stops working at once.
func (s *Store) DeleteBouncer(ctx context.Context, name string) error {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM bouncers WHERE name = ?`, name)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete bouncer %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("bouncer %q: %w", name, ErrNotFound)
	}
	return nil
}

// ListBouncers returns the registered bouncers by name.
func (s *Store) ListBouncers(ctx context.Context) ([]Bouncer, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, created_at, last_seen, last_seq, last_ip, user_agent FROM bouncers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list bouncers: %w", err)
	}
	defer rows.Close()
	var out []Bouncer
	for rows.Next() {
		var b Bouncer
		var created, seen int64
		if err := rows.Scan(&b.Name, &created, &seen, &b.LastSeq, &b.LastIP, &b.UserAgent); err != nil {
			return nil, fmt.Errorf("list bouncers: %w", err)
		}
		b.Created, b.LastSeen = fromNanos(created), fromNanos(seen)
		out = append(out, b)
	}
	return out, rows.Err()
}

// AuthBouncer finds the bouncer holding key, by the key's SHA-256 through
// an index: the lookup's timing can only tell how much of a hash matched a
// stored one, which says nothing of any key.
func (s *Store) AuthBouncer(ctx context.Context, key string) (Bouncer, error) {
	want := hashKey(key)
	rows, err := s.r.QueryContext(ctx, `SELECT name, key_hash, created_at, last_seen, last_seq, last_ip, user_agent FROM bouncers WHERE key_hash = ?`, want)
	if err != nil {
		return Bouncer{}, fmt.Errorf("authenticate bouncer: %w", err)
	}
	defer rows.Close()
	var found Bouncer
	ok := 0
	for rows.Next() {
		var b Bouncer
		var h []byte
		var created, seen int64
		if err := rows.Scan(&b.Name, &h, &created, &seen, &b.LastSeq, &b.LastIP, &b.UserAgent); err != nil {
			return Bouncer{}, fmt.Errorf("authenticate bouncer: %w", err)
		}
		if subtle.ConstantTimeCompare(h, want) == 1 {
			b.Created, b.LastSeen = fromNanos(created), fromNanos(seen)
			found = b
			ok = 1
		}
	}
	if err := rows.Err(); err != nil {
		return Bouncer{}, fmt.Errorf("authenticate bouncer: %w", err)
	}
	if ok == 0 {
		return Bouncer{}, ErrUnauthorized
	}
	return found, nil
}

// BouncerPulled records a bouncer's visit and, when seq > 0, the stream
// sequence it has now seen.
func (s *Store) BouncerPulled(ctx context.Context, name string, seq int64, at time.Time, ip, userAgent string) error {
	if len(userAgent) > 256 {
		userAgent = userAgent[:256]
	}
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		if seq > 0 {
			_, err := tx.ExecContext(ctx, `UPDATE bouncers SET last_seen = ?, last_seq = ?, last_ip = ?, user_agent = ? WHERE name = ?`, at.UnixNano(), seq, ip, userAgent, name)
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE bouncers SET last_seen = ?, last_ip = ?, user_agent = ? WHERE name = ?`, at.UnixNano(), ip, userAgent, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("bouncer %q pulled: %w", name, err)
	}
	return nil
}

// AllowEntry is an allowlist entry managed from the CLI.
type AllowEntry struct {
	Value   netip.Prefix
	Reason  string
	Created time.Time
}

// AddAllow stores an allowlist entry.
func (s *Store) AddAllow(ctx context.Context, e AllowEntry) error {
	v := model.ValueString(e.Value)
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM allowlist WHERE value = ?`, v).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("allowlist entry %s: %w", v, ErrExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO allowlist (value, reason, created_at) VALUES (?, ?, ?)`, v, e.Reason, nanos(e.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("add allowlist entry: %w", err)
	}
	return nil
}

// DeleteAllow removes an allowlist entry.
func (s *Store) DeleteAllow(ctx context.Context, value netip.Prefix) error {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM allowlist WHERE value = ?`, model.ValueString(value))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete allowlist entry: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("allowlist entry %s: %w", model.ValueString(value), ErrNotFound)
	}
	return nil
}

// ListAllow returns the stored allowlist entries.
func (s *Store) ListAllow(ctx context.Context) ([]AllowEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT value, reason, created_at FROM allowlist ORDER BY value`)
	if err != nil {
		return nil, fmt.Errorf("list allowlist: %w", err)
	}
	defer rows.Close()
	var out []AllowEntry
	for rows.Next() {
		var v string
		var e AllowEntry
		var created int64
		if err := rows.Scan(&v, &e.Reason, &created); err != nil {
			return nil, fmt.Errorf("list allowlist: %w", err)
		}
		p, err := model.ParseValue(v)
		if err != nil {
			return nil, fmt.Errorf("allowlist entry %q: %w", v, err)
		}
		e.Value, e.Created = p, fromNanos(created)
		out = append(out, e)
	}
	return out, rows.Err()
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

// PruneStats says what Prune removed.
type PruneStats struct {
	Decisions int64
	Alerts    int64
}

// Prune deletes decisions that ended (expired or deleted) before cutoff and
// alerts older than cutoff that no active decision refers to, then returns
// freed pages to the file system so the file does not grow without bound.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (PruneStats, error) {
	var st PruneStats
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM decisions WHERE deleted_at IS NOT NULL AND deleted_at < ?`, cutoff.UnixNano())
		if err != nil {
			return err
		}
		if st.Decisions, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `DELETE FROM alerts WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL)`, cutoff.UnixNano())
		if err != nil {
			return err
		}
		st.Alerts, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return PruneStats{}, fmt.Errorf("prune store: %w", err)
	}
	if st.Decisions > 0 {
		if err := s.rebuildCounts(ctx, s.r); err != nil {
			return st, fmt.Errorf("prune store: %w", err)
		}
	}
	// incremental_vacuum frees pages as it is stepped: drain it.
	rows, err := s.w.QueryContext(ctx, `PRAGMA incremental_vacuum`)
	if err != nil {
		return st, fmt.Errorf("prune store: vacuum: %w", err)
	}
	for rows.Next() {
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("prune store: vacuum: %w", err)
	}
	// Truncate the WAL so the pages vacuum freed leave the disk too.
	if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return st, fmt.Errorf("prune store: checkpoint: %w", err)
	}
	return st, nil
}

// CapAlerts deletes the oldest alerts past the newest max that no active
// decision refers to, so a flood cannot grow the file faster than
// retention prunes it, and returns how many it deleted.
func (s *Store) CapAlerts(ctx context.Context, max int) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM alerts WHERE id <= (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET ?)
			AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id AND d.deleted_at IS NULL)`, max)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cap alerts at %d: %w", max, err)
	}
	return n, nil
}
