package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// migrations mirror the SQLite store's (enforce/store/schema.go) version
// for version: the same tables and columns, so a store can move from one
// to the other and both answer the same questions. The storetest package
// checks the versions and columns match. What differs is the dialect:
// BIGINT for INTEGER, BYTEA for BLOB, BOOLEAN where SQLite keeps 0/1,
// explicit (seq, id) indexes where SQLite appends the rowid by itself, and
// what several writers need (the ID counter, the notify trigger).
var migrations = []string{
	`CREATE TABLE seq (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
	INSERT INTO seq (id, value) VALUES (1, 0);
	CREATE SEQUENCE alerts_id_seq;
	CREATE TABLE alerts (
		id BIGINT PRIMARY KEY DEFAULT nextval('alerts_id_seq'),
		created_at BIGINT NOT NULL,
		scenario TEXT NOT NULL,
		scope TEXT NOT NULL,
		value TEXT NOT NULL,
		events_count BIGINT NOT NULL,
		simulated BOOLEAN NOT NULL,
		data TEXT NOT NULL
	);
	ALTER SEQUENCE alerts_id_seq OWNED BY alerts.id;
	CREATE INDEX alerts_created ON alerts (created_at);
	CREATE INDEX alerts_value ON alerts (value);
	CREATE TABLE decisions (
		id BIGINT PRIMARY KEY,
		alert_id BIGINT,
		value TEXT NOT NULL,
		scope TEXT NOT NULL,
		start_ip BYTEA,
		end_ip BYTEA,
		type TEXT NOT NULL,
		origin TEXT NOT NULL,
		scenario TEXT NOT NULL,
		reason TEXT NOT NULL,
		simulated BOOLEAN NOT NULL,
		created_at BIGINT NOT NULL,
		until BIGINT NOT NULL,
		deleted_at BIGINT,
		seq BIGINT NOT NULL,
		del_seq BIGINT
	);
	CREATE INDEX decisions_value ON decisions (value, created_at);
	CREATE INDEX decisions_until ON decisions (until) WHERE deleted_at IS NULL;
	CREATE INDEX decisions_seq ON decisions (seq, id);
	CREATE INDEX decisions_del_seq ON decisions (del_seq, id) WHERE del_seq IS NOT NULL;
	CREATE INDEX decisions_ranges ON decisions (start_ip, end_ip) WHERE deleted_at IS NULL AND scope = 'Range';
	CREATE INDEX decisions_deleted ON decisions (deleted_at) WHERE deleted_at IS NOT NULL;
	CREATE INDEX decisions_alert ON decisions (alert_id) WHERE alert_id IS NOT NULL;
	CREATE TABLE bouncers (
		name TEXT PRIMARY KEY,
		key_hash BYTEA NOT NULL,
		created_at BIGINT NOT NULL,
		last_seen BIGINT NOT NULL DEFAULT 0,
		last_seq BIGINT NOT NULL DEFAULT 0,
		last_ip TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE allowlist (
		value TEXT PRIMARY KEY,
		reason TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	-- PostgreSQL only: the next free decision ID, handed out in blocks
	-- (SQLite's one process counts in memory from max(id)).
	CREATE TABLE decision_ids (id INTEGER PRIMARY KEY CHECK (id = 1), next BIGINT NOT NULL);
	INSERT INTO decision_ids (id, next) VALUES (1, 1);
	-- PostgreSQL only: every new sequence value is announced, delivered at
	-- its commit, so streams on other replicas wake.
	CREATE FUNCTION moat_seq_notify() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_notify('` + channel + `', NEW.value::text);
		RETURN NULL;
	END $$;
	CREATE TRIGGER seq_notify AFTER UPDATE ON seq FOR EACH ROW EXECUTE FUNCTION moat_seq_notify();`,
	// Bouncers are found by their key's hash.
	`CREATE INDEX bouncers_key ON bouncers (key_hash);`,
	// CrowdSec agents ("machines") of the fleet server.
	`CREATE TABLE machines (
		machine_id TEXT PRIMARY KEY,
		password_hash BYTEA NOT NULL,
		approved BOOLEAN NOT NULL DEFAULT false,
		created_at BIGINT NOT NULL,
		last_login BIGINT NOT NULL DEFAULT 0,
		last_heartbeat BIGINT NOT NULL DEFAULT 0,
		ip TEXT NOT NULL DEFAULT '',
		version TEXT NOT NULL DEFAULT '',
		scenarios TEXT NOT NULL DEFAULT ''
	);`,
	// Allowlist entries added at run time may expire (0: never).
	`ALTER TABLE allowlist ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;`,
	// A decision may be scoped to destination ports ("25,465") of one
	// protocol ("tcp", "udp"; "" both); '' ports is a plain ban.
	`ALTER TABLE decisions ADD COLUMN ports TEXT NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN protocol TEXT NOT NULL DEFAULT '';`,
}

// channel is the LISTEN/NOTIFY channel sequence values are announced on.
const channel = "moat_decisions"

// migrateLock is the advisory lock key migrations run under, so replicas
// starting together apply each version once.
const migrateLock = 0x6d6f61745f6d6967 // "moat_mig"

// SchemaVersion is the schema version this package migrates to.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Transaction-scoped: released at commit or rollback, even if the
		// connection dies.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("migrations table: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this moat (%d): downgrade refused", have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			// Simple protocol: a migration is several statements.
			if _, err := tx.Exec(ctx, migrations[v-1], pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, v, time.Now().UnixNano()); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		return nil
	})
}
