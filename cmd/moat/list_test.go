package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/store"
)

// bulkInsert writes n active bans on 10.0.0.0/8 addresses straight into
// the store's file, in one statement: a million rows take seconds where
// the insert path takes minutes. The store must not be open.
func bulkInsert(t testing.TB, path string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	_, err = db.Exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?)
		INSERT INTO decisions (id, value, scope, type, origin, scenario, reason, simulated, created_at, until, seq)
		SELECT i, printf('10.%d.%d.%d', (i>>16)&255, (i>>8)&255, i&255), 'Ip', 'ban', 'list', 'blocklist/test', 'bulk', 0, ?, ?, 1 FROM c`,
		n, now.UnixNano(), now.Add(24*time.Hour).UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE seq SET value = 1`); err != nil {
		t.Fatal(err)
	}
}

// listDaemon serves the admin API over a store holding n decisions and
// returns the config that points the CLI at it.
func listDaemon(t *testing.T, n int) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moat-list-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "moat.db")
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	bulkInsert(t, path, n)
	cfg, svc := serveAdmin(t, dir, path)
	// The store loads its in-memory indexes in the background.
	if err := svc.Store().(*store.Store).WaitIndexed(context.Background()); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The list shows 100 unless told, says on stderr (tables) how many there
// are, and -o json stays one JSON array whatever the limit.
func TestDecisionsListLimit(t *testing.T) {
	cfg := listDaemon(t, 250)
	for _, tc := range []struct {
		args     []string
		rows     int
		stderr   string
		firstID  int64
		wantJSON bool
	}{
		{[]string{"-o", "table"}, 100, "showing 100 of 250 (use --limit or --all)\n", 250, false},
		{[]string{"-o", "table", "--limit", "7"}, 7, "showing 7 of 250 (use --limit or --all)\n", 250, false},
		{[]string{"-o", "table", "--all"}, 250, "", 250, false},
		{[]string{"-o", "table", "--limit", "1000"}, 250, "", 250, false},
		{[]string{"-o", "json"}, 100, "", 250, true},
		{[]string{"-o", "json", "--all"}, 250, "", 250, true},
		{[]string{"-o", "raw", "--limit", "3"}, 3, "", 0, false},
		{[]string{"-o", "json", "--ip", "10.0.0.1"}, 1, "", 1, true},
		{[]string{"-o", "json", "--ip", "192.0.2.1"}, 0, "", 0, true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runMoat(t, "", append([]string{"decisions", "list", "-c", cfg}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if errOut != tc.stderr {
				t.Errorf("stderr = %q, want %q", errOut, tc.stderr)
			}
			switch {
			case tc.wantJSON:
				var ds []api.Decision
				if err := json.Unmarshal([]byte(out), &ds); err != nil {
					t.Fatalf("-o json is not a JSON array: %v\n%s", err, out)
				}
				if ds == nil || len(ds) != tc.rows {
					t.Fatalf("%d decisions, want %d (nil: %v)", len(ds), tc.rows, ds == nil)
				}
				if tc.rows > 0 && ds[0].ID != tc.firstID {
					t.Errorf("first ID %d, want %d (newest first)", ds[0].ID, tc.firstID)
				}
			case tc.args[1] == "raw":
				if got := strings.Count(out, "\n"); got != tc.rows {
					t.Errorf("%d lines, want %d:\n%s", got, tc.rows, out)
				}
			default:
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				if len(lines) != tc.rows+1 || !strings.HasPrefix(lines[0], "ID ") {
					t.Fatalf("%d lines, want a header and %d rows:\n%s", len(lines), tc.rows, out)
				}
				if !strings.HasPrefix(lines[1], strconv.FormatInt(tc.firstID, 10)+" ") {
					t.Errorf("first row %q, want ID %d", lines[1], tc.firstID)
				}
				// Aligned: every row's ORIGIN column starts where the header's does.
				col := strings.Index(lines[0], "ORIGIN")
				for _, l := range lines[1:] {
					if !strings.HasPrefix(l[col:], "list ") {
						t.Fatalf("row %q not aligned under ORIGIN at %d", l, col)
					}
				}
			}
		})
	}
	for _, args := range [][]string{{"--limit", "0"}, {"--limit", "-1"}, {"--all", "--limit", "5"}} {
		if code, _, errOut := runMoat(t, "", append([]string{"decisions", "list", "-c", cfg}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errOut, exitUsage)
		}
	}
}
