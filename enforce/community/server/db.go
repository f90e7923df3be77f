package server

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "github.com/mattn/go-sqlite3"    // the database/sql driver "sqlite3"
)

// schema is the one schema both dialects run. Times are integers (Unix
// seconds, or milliseconds where named _ms) and flags are integers, so
// neither dialect's date or boolean types leak into the queries.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS reporters (
		id TEXT PRIMARY KEY,
		password_hash TEXT NOT NULL,
		enrolled INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		scenarios TEXT NOT NULL DEFAULT '',
		canaries BIGINT NOT NULL DEFAULT 0,
		agreed BIGINT NOT NULL DEFAULT 0,
		pull_cursor_ms BIGINT NOT NULL DEFAULT 0
	)`,
	`CREATE TABLE IF NOT EXISTS reports (
		addr TEXT NOT NULL,
		scenario TEXT NOT NULL,
		reporter TEXT NOT NULL,
		net TEXT NOT NULL,
		first_at BIGINT NOT NULL,
		last_at BIGINT NOT NULL,
		PRIMARY KEY (addr, scenario, reporter)
	)`,
	`CREATE INDEX IF NOT EXISTS reports_last_at ON reports (last_at)`,
	`CREATE TABLE IF NOT EXISTS listed (
		addr TEXT PRIMARY KEY,
		scenario TEXT NOT NULL,
		score DOUBLE PRECISION NOT NULL,
		listed_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		deleted INTEGER NOT NULL DEFAULT 0,
		changed_ms BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS listed_changed ON listed (changed_ms)`,
}

// db is the server's database with its dialect: SQLite by default,
// PostgreSQL when a DSN is configured.
type db struct {
	*sql.DB
	postgres bool
}

// openDB opens dsn: a postgres:// or postgresql:// URL is PostgreSQL,
// anything else a SQLite file path.
func openDB(ctx context.Context, dsn string) (*db, error) {
	d := &db{postgres: strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")}
	var err error
	if d.postgres {
		d.DB, err = sql.Open("pgx", dsn)
	} else {
		// One connection: SQLite has one writer, and queueing in the pool
		// beats busy retries.
		d.DB, err = sql.Open("sqlite3", "file:"+dsn+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous=NORMAL")
		if err == nil {
			d.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("community store: open: %w", err)
	}
	for _, q := range schema {
		if _, err := d.ExecContext(ctx, q); err != nil {
			d.Close()
			return nil, fmt.Errorf("community store: schema: %w", err)
		}
	}
	return d, nil
}

// q rewrites ? placeholders as $n for PostgreSQL; the queries hold no
// string literal with a question mark.
func (d *db) q(query string) string {
	if !d.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
