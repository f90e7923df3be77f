package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestValues(t *testing.T) {
	cases := []struct{ in, value, scope, first, last string }{
		{"198.18.0.1", "198.18.0.1", "Ip", "", ""},
		{"::ffff:198.18.0.1", "198.18.0.1", "Ip", "", ""},
		{"198.18.0.77/24", "198.18.0.0/24", "Range", "198.18.0.0", "198.18.0.255"},
		{"198.18.0.0/15", "198.18.0.0/15", "Range", "198.18.0.0", "198.19.255.255"},
		{"::ffff:198.18.0.0/112", "198.18.0.0/16", "Range", "198.18.0.0", "198.18.255.255"},
		{"2001:db8::/33", "2001:db8::/33", "Range", "2001:db8::", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"},
		{"2001:DB8::1", "2001:db8::1", "Ip", "", ""},
	}
	for _, c := range cases {
		p, err := model.ParseValue(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if model.ValueString(p) != c.value || model.ScopeOf(p) != c.scope {
			t.Errorf("%s: %s %s, want %s %s", c.in, model.ValueString(p), model.ScopeOf(p), c.value, c.scope)
		}
		if c.first != "" {
			f, l := bounds(p)
			if netip.AddrFrom16([16]byte(f)).Unmap().String() != c.first || netip.AddrFrom16([16]byte(l)).Unmap().String() != c.last {
				t.Errorf("%s: bounds %x %x", c.in, f, l)
			}
		}
	}
	for _, bad := range []string{"", "x", "198.18.0.1/33", "fe80::1%eth0", "198.18.0.256", "1.2.3.4/"} {
		if _, err := model.ParseValue(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestQueryPlans guards the indexes: the hot queries must never scan the
// decisions table.
func TestQueryPlans(t *testing.T) {
	s := openTest(t)
	now := time.Now()
	queries := map[string][]any{}
	for name, f := range map[string]Filter{"ip": {IP: netip.MustParseAddr("198.18.0.1")}, "range": {Range: netip.MustParsePrefix("198.18.0.0/24")}, "value": {Value: "198.18.0.1"}} {
		where, args := f.where(now)
		queries[name] = append([]any{`SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` ORDER BY id DESC`}, args...)
	}
	queries["delta-new"] = []any{streamNew, 5, 9, 5, 7, 9, 0, 1000}
	queries["delta-deleted"] = []any{streamDeleted, 5, 9, 5, 7, 5, 1000}
	queries["auth"] = []any{`SELECT name FROM bouncers WHERE key_hash = ?`, hashKey("k")}
	queries["startup"] = []any{streamStartup, 0, 9, 9, 0, 1000}
	for name, f := range map[string]Filter{"page-ip": {IP: netip.MustParseAddr("198.18.0.1")}, "page-range": {Range: netip.MustParsePrefix("198.18.0.0/24")}, "page-all": {}} {
		where, args := f.where(now)
		queries[name] = append([]any{`SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` AND id < ? ORDER BY id DESC LIMIT ?`}, append(args, 1<<62, 1000)...)
	}
	queries["expire"] = []any{`SELECT count(*) FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= ?`, 0}
	for name, q := range queries {
		rows, err := s.r.Query(`EXPLAIN QUERY PLAN `+q[0].(string), q[1:]...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			rows.Scan(&id, &parent, &unused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		t.Logf("%s: %q", name, plan)
		for _, step := range plan {
			// The startup pull walks the table in id order on purpose.
			if name == "startup" && step == "SEARCH decisions USING INTEGER PRIMARY KEY (rowid>?)" {
				continue
			}
			if strings.Contains(step, "TEMP B-TREE") && (name == "startup" || strings.HasPrefix(name, "delta") || name == "page-all") {
				t.Errorf("%s sorts: %q", name, plan)
			}
			if (strings.HasPrefix(step, "SCAN decisions") || strings.HasPrefix(step, "SCAN bouncers")) && !strings.Contains(step, "INDEX") {
				t.Errorf("%s scans the table: %q", name, plan)
			}
		}
	}
}

func TestMigrationsAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(context.Background(), path, Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	ds := []model.Decision{{Value: netip.MustParsePrefix("198.18.0.1/32"), Until: time.Now().Add(time.Hour)}}
	if err := s.InsertDecisions(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	var sync int
	s.w.QueryRow(`PRAGMA synchronous`).Scan(&sync)
	if sync != 2 {
		t.Errorf("Durable: synchronous=%d, want 2 (FULL)", sync)
	}
	s.Close()
	s, err = Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var versions, mode, av int
	var jm string
	s.w.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&versions)
	s.w.QueryRow(`PRAGMA journal_mode`).Scan(&jm)
	s.w.QueryRow(`PRAGMA synchronous`).Scan(&mode)
	s.w.QueryRow(`PRAGMA auto_vacuum`).Scan(&av)
	if versions != len(migrations) || jm != "wal" || mode != 1 || av != 2 {
		t.Errorf("versions %d journal %s synchronous %d auto_vacuum %d", versions, jm, mode, av)
	}
	if next := s.ReserveIDs(1); next != ds[0].ID+1 {
		t.Errorf("next ID %d after %d", next, ds[0].ID)
	}
	// A store from a newer moat is refused rather than misread.
	s.w.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`)
	s.Close()
	if _, err := Open(context.Background(), path, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: %v", err)
	}
}

func TestBouncers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	k1, err := s.AddBouncer(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := s.AddBouncer(ctx, "b")
	if k1 == k2 || len(k1) != 64 {
		t.Fatalf("keys %q %q", k1, k2)
	}
	if _, err := s.AddBouncer(ctx, "a"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if b, err := s.AuthBouncer(ctx, k2); err != nil || b.Name != "b" {
		t.Errorf("auth b: %+v %v", b, err)
	}
	if _, err := s.AuthBouncer(ctx, k1[:63]); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("truncated key: %v", err)
	}
	var stored int
	s.r.QueryRow(`SELECT count(*) FROM bouncers WHERE key_hash = ?`, []byte(k1)).Scan(&stored)
	if stored != 0 {
		t.Error("key stored in clear")
	}
	if err := s.BouncerPulled(ctx, "a", 7, time.Now(), "127.0.0.1", "ua"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.AuthBouncer(ctx, k1); b.LastSeq != 7 || b.LastIP != "127.0.0.1" {
		t.Errorf("pulled: %+v", b)
	}
	if err := s.DeleteBouncer(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthBouncer(ctx, k1); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("deleted bouncer: %v", err)
	}
}

func TestPruneShrinksFile(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	Fill(t, s, 60000)
	s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	full := s.Size()
	if _, err := s.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Prune(ctx, time.Now().Add(time.Second))
	if err != nil || st.Decisions != 60000 {
		t.Fatalf("prune: %+v %v", st, err)
	}
	if after := s.Size(); after > full/4 {
		t.Logf("freelist etc: %v", s.debugSizes())
		t.Errorf("file %d bytes before, %d after pruning everything", full, after)
	}
	// History still counts what is within the retention.
	if err := s.InsertDecisions(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.0.9/32"), Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	s.DeleteAll(ctx)
	s.Prune(ctx, time.Now().Add(-time.Hour))
	if n, _ := s.CountDecisions(ctx, "198.18.0.9", time.Time{}); n != 1 {
		t.Errorf("count after prune within retention: %d", n)
	}
}

func (s *Store) debugSizes() []int64 {
	var pages, free int64
	s.w.QueryRow(`PRAGMA page_count`).Scan(&pages)
	s.w.QueryRow(`PRAGMA freelist_count`).Scan(&free)
	return []int64{pages, free}
}

// TestCountsWithoutReaders checks the escalation count while every reader
// connection is held (as bouncers that stop reading once held them): it
// must answer at once, and as SQL would, after inserts, a prune and a
// reopen.
func TestCountsWithoutReaders(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	add := func(values ...string) time.Time {
		t.Helper()
		var ds []model.Decision
		for _, v := range values {
			p, err := model.ParseValue(v)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, model.Decision{Value: p, Type: "ban", Origin: model.OriginLocal, Until: time.Now().Add(time.Hour)})
		}
		if err := s.InsertDecisions(ctx, ds); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	add("198.18.0.1", "198.18.0.2", "198.18.1.0/24")
	mid := add("198.18.0.1")
	time.Sleep(time.Millisecond)
	add("198.18.0.1", "2001:db8::1")
	if _, err := s.DeleteDecisions(ctx, Filter{Value: "198.18.0.2"}); err != nil {
		t.Fatal(err)
	}
	values := []string{"198.18.0.1", "198.18.0.2", "198.18.1.0/24", "2001:db8::1", "198.18.0.3"}
	sinces := []time.Time{{}, mid, time.Now().Add(time.Hour)}
	check := func(step string) {
		t.Helper()
		// Hold every reader connection in an open transaction.
		var txs []*sql.Tx
		for range 4 {
			tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := tx.QueryRow(`SELECT count(*) FROM decisions`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
		got := map[string]int{}
		for _, v := range values {
			for i, since := range sinces {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				n, err := s.CountDecisions(cctx, v, since)
				cancel()
				if err != nil {
					t.Fatalf("%s: count %s since #%d with every reader held: %v", step, v, i, err)
				}
				got[fmt.Sprint(v, i)] = n
			}
		}
		for _, tx := range txs {
			tx.Rollback()
		}
		for _, v := range values {
			for i, since := range sinces {
				var want int
				if err := s.w.QueryRow(`SELECT count(*) FROM decisions WHERE value = ? AND created_at >= ?`, v, nanos(since)).Scan(&want); err != nil {
					t.Fatal(err)
				}
				if n := got[fmt.Sprint(v, i)]; n != want {
					t.Errorf("%s: count %s since #%d = %d, SQL says %d", step, v, i, n, want)
				}
			}
		}
	}
	check("inserted")
	if st, err := s.Prune(ctx, time.Now().Add(time.Second)); err != nil || st.Decisions != 1 {
		t.Fatalf("prune: %+v, %v", st, err)
	}
	check("pruned")
	s.Close()
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	check("reopened")
}
