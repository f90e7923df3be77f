package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"
)

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
