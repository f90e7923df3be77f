package postgres

import (
	"context"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

// TestQueryPlans guards the indexes on a table of 200,000 decisions: the
// hot queries never scan the decisions or bouncers table, and the pages
// read in key order never sort.
func TestQueryPlans(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s := open(t, pg.DSN())
	ctx := context.Background()
	const n, chunk = 200_000, 50_000
	for i := 0; i < n; i += chunk {
		if err := s.InsertDecisions(ctx, decisions(chunk, i, time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteDecisions(ctx, store.Filter{Range: netip.MustParsePrefix("198.18.0.0/22")}); err != nil {
		t.Fatal(err)
	}
	// Enough bouncers that the planner prefers the key index to a scan.
	if _, err := s.pool.Exec(ctx, `INSERT INTO bouncers (name, key_hash, created_at) SELECT 'b' || i, sha256(('k' || i)::bytea), 0 FROM generate_series(1, 5000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	type query struct {
		sql    string
		args   []any
		sorted bool // must not sort
	}
	queries := map[string]query{
		"startup":         {streamStartup, []any{0, 9, 9, now.UnixNano(), 1000}, true},
		"delta-new":       {streamNew, []any{5, 9, 5, 7, 9, 0, 1000}, true},
		"delta-deleted":   {streamDeleted, []any{5, 9, 5, 7, 5, 1000}, true},
		"auth":            {`SELECT ` + bouncerCols + `, key_hash FROM bouncers WHERE key_hash = $1`, []any{hashKey("k")}, false},
		"expire":          {`SELECT EXISTS (SELECT 1 FROM decisions WHERE deleted_at IS NULL AND until != 0 AND until <= $1)`, []any{now.UnixNano()}, false},
		"count":           {`SELECT count(*) FROM decisions WHERE value = $1 AND created_at >= $2`, []any{"198.18.0.1", 0}, false},
		"has-active":      {`SELECT EXISTS (SELECT 1 FROM decisions WHERE value = $1 AND scenario = $2 AND alert_id IS NOT NULL AND deleted_at IS NULL AND (until = 0 OR until > $3))`, []any{"198.18.0.1", "s", 0}, false},
		"has-active-many": {hasActiveMany, []any{[]string{"198.18.0.1", "198.18.0.2"}, []string{"s", "s"}, []int64{0, 0}}, false},
		"count-many":      {countMany, []any{[]string{"198.18.0.1", "198.18.0.2"}, []int64{0, 0}}, false},
		"active-page":     {`SELECT ` + recordCols + ` FROM decisions WHERE id > $1 AND deleted_at IS NULL AND (until = 0 OR until > $2) ORDER BY id LIMIT $3`, []any{0, 0, 4096}, true},
	}
	filters := map[string]store.Filter{
		"ip":    {IP: netip.MustParseAddr("198.18.9.1")},
		"range": {Range: netip.MustParsePrefix("198.18.9.0/24")},
		"value": {Value: "198.18.9.1"},
	}
	for name, f := range filters {
		var p params
		w := where(f, now, &p)
		queries[name] = query{`SELECT ` + recordCols + ` FROM decisions WHERE ` + w + ` ORDER BY id DESC`, p, false}
		queries["page-"+name] = query{`SELECT ` + recordCols + ` FROM decisions WHERE ` + w + ` AND id < $` + itoa(len(p)+1) + ` ORDER BY id DESC LIMIT $` + itoa(len(p)+2), append(p, int64(math.MaxInt64), 256), false}
	}
	var p params
	queries["page-all"] = query{`SELECT ` + recordCols + ` FROM decisions WHERE ` + where(store.Filter{}, now, &p) + ` AND id < $2 ORDER BY id DESC LIMIT $3`, append(p, int64(math.MaxInt64), 256), true}
	for name, q := range queries {
		rows, err := s.pool.Query(ctx, `EXPLAIN `+q.sql, q.args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		t.Logf("%s:\n%s", name, text)
		if strings.Contains(text, "Seq Scan on decisions") || strings.Contains(text, "Seq Scan on bouncers") {
			t.Errorf("%s scans the table:\n%s", name, text)
		}
		// The coalesced lookups run a subplan per key: it must be the
		// value index's, whatever other index the planner could pick.
		if strings.HasSuffix(name, "-many") && (!strings.Contains(text, "decisions_value") || strings.Contains(text, "decisions_until") || strings.Contains(text, "decisions_alert")) {
			t.Errorf("%s does not look keys up by value:\n%s", name, text)
		}
		if q.sorted && strings.Contains(text, "Sort") {
			t.Errorf("%s sorts:\n%s", name, text)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
