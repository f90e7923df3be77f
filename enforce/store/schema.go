package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

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
	// CrowdSec agents ("machines") of the fleet server role: a bcrypt
	// password hash, an approval an admin gives (or an enrolment token
	// gave) before the machine may log in, and what it last told of itself.
	`CREATE TABLE machines (
		machine_id TEXT PRIMARY KEY,
		password_hash BLOB NOT NULL,
		approved INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		last_login INTEGER NOT NULL DEFAULT 0,
		last_heartbeat INTEGER NOT NULL DEFAULT 0,
		ip TEXT NOT NULL DEFAULT '',
		version TEXT NOT NULL DEFAULT '',
		scenarios TEXT NOT NULL DEFAULT ''
	);`,
	// Allowlist entries added at run time may expire (0: never).
	`ALTER TABLE allowlist ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;`,
	// A decision may be scoped to destination ports ("25,465") of one
	// protocol ("tcp", "udp"; "" both); '' ports is a plain ban.
	`ALTER TABLE decisions ADD COLUMN ports TEXT NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN protocol TEXT NOT NULL DEFAULT '';`,
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
