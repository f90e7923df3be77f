package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// hashKey is the stored form of an API key (the SQLite store's).
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
	// ON CONFLICT: two replicas adding one name at once get one winner
	// and one ErrExists, not a unique-violation error.
	tag, err := s.pool.Exec(ctx, `INSERT INTO bouncers (name, key_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`, name, hashKey(key), time.Now().UnixNano())
	if err != nil {
		return "", s.wrap("add bouncer", err)
	}
	if tag.RowsAffected() == 0 {
		return "", fmt.Errorf("add bouncer: bouncer %q: %w", name, store.ErrExists)
	}
	return key, nil
}

// DeleteBouncer removes a bouncer; its key stops working at once.
func (s *Store) DeleteBouncer(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM bouncers WHERE name = $1`, name)
	if err != nil {
		return s.wrap(fmt.Sprintf("delete bouncer %q", name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("bouncer %q: %w", name, store.ErrNotFound)
	}
	return nil
}

const bouncerCols = `name, created_at, last_seen, last_seq, last_ip, user_agent`

func scanBouncer(sc scanner, extra ...any) (store.Bouncer, error) {
	var b store.Bouncer
	var created, seen int64
	if err := sc.Scan(append([]any{&b.Name, &created, &seen, &b.LastSeq, &b.LastIP, &b.UserAgent}, extra...)...); err != nil {
		return store.Bouncer{}, err
	}
	b.Created, b.LastSeen = fromNanos(created), fromNanos(seen)
	return b, nil
}

// ListBouncers returns the registered bouncers by name.
func (s *Store) ListBouncers(ctx context.Context) ([]store.Bouncer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+bouncerCols+` FROM bouncers ORDER BY name`)
	if err != nil {
		return nil, s.wrap("list bouncers", err)
	}
	defer rows.Close()
	var out []store.Bouncer
	for rows.Next() {
		b, err := scanBouncer(rows)
		if err != nil {
			return nil, s.wrap("list bouncers", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list bouncers", err)
	}
	return out, nil
}

// AuthBouncer finds the bouncer holding key by the key's SHA-256 through
// an index, and compares the hash in constant time.
func (s *Store) AuthBouncer(ctx context.Context, key string) (store.Bouncer, error) {
	want := hashKey(key)
	rows, err := s.pool.Query(ctx, `SELECT `+bouncerCols+`, key_hash FROM bouncers WHERE key_hash = $1`, want)
	if err != nil {
		return store.Bouncer{}, s.wrap("authenticate bouncer", err)
	}
	defer rows.Close()
	var found store.Bouncer
	ok := false
	for rows.Next() {
		var h []byte
		b, err := scanBouncer(rows, &h)
		if err != nil {
			return store.Bouncer{}, s.wrap("authenticate bouncer", err)
		}
		if subtle.ConstantTimeCompare(h, want) == 1 {
			found, ok = b, true
		}
	}
	if err := rows.Err(); err != nil {
		return store.Bouncer{}, s.wrap("authenticate bouncer", err)
	}
	if !ok {
		return store.Bouncer{}, store.ErrUnauthorized
	}
	return found, nil
}

// BouncerPulled records a bouncer's visit and, when seq > 0, the stream
// sequence it has now seen. It does not take the change sequence: a
// visit changes nothing a stream reads.
func (s *Store) BouncerPulled(ctx context.Context, name string, seq int64, at time.Time, ip, userAgent string) error {
	if len(userAgent) > 256 {
		userAgent = userAgent[:256]
	}
	var err error
	if seq > 0 {
		_, err = s.pool.Exec(ctx, `UPDATE bouncers SET last_seen = $1, last_seq = $2, last_ip = $3, user_agent = $4 WHERE name = $5`, at.UnixNano(), seq, ip, userAgent, name)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE bouncers SET last_seen = $1, last_ip = $2, user_agent = $3 WHERE name = $4`, at.UnixNano(), ip, userAgent, name)
	}
	if err != nil {
		return s.wrap(fmt.Sprintf("bouncer %q pulled", name), err)
	}
	return nil
}

// AddAllow stores an allowlist entry.
func (s *Store) AddAllow(ctx context.Context, e store.AllowEntry) error {
	v := model.ValueString(e.Value)
	tag, err := s.pool.Exec(ctx, `INSERT INTO allowlist (value, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT (value) DO NOTHING`, v, e.Reason, nanos(e.Created))
	if err != nil {
		return s.wrap("add allowlist entry", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("add allowlist entry: allowlist entry %s: %w", v, store.ErrExists)
	}
	return nil
}

// DeleteAllow removes an allowlist entry.
func (s *Store) DeleteAllow(ctx context.Context, value netip.Prefix) error {
	v := model.ValueString(value)
	tag, err := s.pool.Exec(ctx, `DELETE FROM allowlist WHERE value = $1`, v)
	if err != nil {
		return s.wrap("delete allowlist entry", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("allowlist entry %s: %w", v, store.ErrNotFound)
	}
	return nil
}

// ListAllow returns the stored allowlist entries.
func (s *Store) ListAllow(ctx context.Context) ([]store.AllowEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT value, reason, created_at FROM allowlist ORDER BY value`)
	if err != nil {
		return nil, s.wrap("list allowlist", err)
	}
	defer rows.Close()
	var out []store.AllowEntry
	for rows.Next() {
		var v string
		var e store.AllowEntry
		var created int64
		if err := rows.Scan(&v, &e.Reason, &created); err != nil {
			return nil, s.wrap("list allowlist", err)
		}
		p, err := model.ParseValue(v)
		if err != nil {
			return nil, s.wrap(fmt.Sprintf("allowlist entry %q", v), err)
		}
		e.Value, e.Created = p, fromNanos(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list allowlist", err)
	}
	return out, nil
}

// SetAllowExpiry makes an allowlist entry expire at t (zero: never).
func (s *Store) SetAllowExpiry(ctx context.Context, value netip.Prefix, t time.Time) error {
	v := model.ValueString(value)
	var exp int64
	if !t.IsZero() {
		exp = nanos(t)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE allowlist SET expires_at = $1 WHERE value = $2`, exp, v)
	if err != nil {
		return s.wrap("set allowlist expiry", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("allowlist entry %s: %w", v, store.ErrNotFound)
	}
	return nil
}

// AllowExpiries returns the expiry of each allowlist entry that has one.
func (s *Store) AllowExpiries(ctx context.Context) (map[netip.Prefix]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT value, expires_at FROM allowlist WHERE expires_at > 0`)
	if err != nil {
		return nil, s.wrap("allowlist expiries", err)
	}
	defer rows.Close()
	out := map[netip.Prefix]time.Time{}
	for rows.Next() {
		var v string
		var exp int64
		if err := rows.Scan(&v, &exp); err != nil {
			return nil, s.wrap("allowlist expiries", err)
		}
		p, err := model.ParseValue(v)
		if err != nil {
			return nil, s.wrap(fmt.Sprintf("allowlist entry %q", v), err)
		}
		out[p] = fromNanos(exp)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("allowlist expiries", err)
	}
	return out, nil
}

// Counts counts rows and measures the database.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > $1)),
		(SELECT count(*) FROM decisions),
		(SELECT count(*) FROM alerts),
		(SELECT count(*) FROM bouncers),
		(SELECT count(*) FROM allowlist),
		pg_database_size(current_database())`, time.Now().UnixNano()).
		Scan(&c.ActiveDecisions, &c.Decisions, &c.Alerts, &c.Bouncers, &c.Allowlist, &c.FileBytes)
	if err != nil {
		return store.Counts{}, s.wrap("count store rows", err)
	}
	return c, nil
}
