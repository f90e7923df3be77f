package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/enforce/store/postgres"
	"github.com/moatsec/moat/internal/testutil"
)

func TestSQLite(t *testing.T) {
	Run(t, func(t *testing.T) Store {
		s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestPostgres runs the contract on one cluster, each case in a database
// of its own.
func TestPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	var n atomic.Int64
	Run(t, func(t *testing.T) Store {
		dsn := newDatabase(t, pg, fmt.Sprintf("case%d", n.Add(1)))
		s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// newDatabase creates a database in pg's cluster and returns its DSN.
func newDatabase(t *testing.T, pg *testutil.Postgres, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(pg.DSN(), "/"+pg.Database+"?", "/"+name+"?", 1)
}

// TestSchemasMatch: the PostgreSQL migrations mirror SQLite's version for
// version, and leave the same tables with the same columns.
func TestSchemasMatch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var liteVersion int
	if err := db.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&liteVersion); err != nil {
		t.Fatal(err)
	}
	if liteVersion != postgres.SchemaVersion() {
		t.Fatalf("SQLite schema is at version %d, PostgreSQL's at %d: mirror the new migration in enforce/store/postgres/schema.go", liteVersion, postgres.SchemaVersion())
	}
	lite := map[string][]string{}
	rows, err := db.Query(`SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		lite[table] = append(lite[table], col)
	}
	rows.Close()

	pg := testutil.StartPostgres(t)
	ps, err := postgres.Open(ctx, pg.DSN(), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps.Close()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pgVersion int
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&pgVersion); err != nil {
		t.Fatal(err)
	}
	if pgVersion != liteVersion {
		t.Errorf("PostgreSQL database at version %d, want %d", pgVersion, liteVersion)
	}
	pgRows, err := conn.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`)
	if err != nil {
		t.Fatal(err)
	}
	pgCols := map[string][]string{}
	for pgRows.Next() {
		var table, col string
		if err := pgRows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		pgCols[table] = append(pgCols[table], col)
	}
	pgRows.Close()
	// decision_ids is PostgreSQL's alone: SQLite's one writer counts IDs
	// in memory.
	delete(pgCols, "decision_ids")
	for table, cols := range lite {
		if !slices.Equal(cols, pgCols[table]) {
			t.Errorf("table %s: SQLite columns %v, PostgreSQL %v", table, cols, pgCols[table])
		}
		delete(pgCols, table)
	}
	for table := range pgCols {
		t.Errorf("table %s only in PostgreSQL", table)
	}
}
