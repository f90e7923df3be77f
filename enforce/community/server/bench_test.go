package server

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
	"github.com/moatsec/moat/internal/testutil"
)

// BenchmarkSignalsHTTP measures signals ingested per second through
// POST /v3/signals, 500 a request, one reporter, on SQLite and on
// PostgreSQL.
func BenchmarkSignalsHTTP(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchSignals(b, "") })
	b.Run("postgres", func(b *testing.B) { benchSignals(b, testutil.StartPostgres(b).DSN()) })
}

func benchSignals(b *testing.B, dsn string) {
	f := newFixture(b, dsn, nil)
	r := f.reporter(b, "bench", "127.0.0.2")
	sigs := make([]wire.Signal, 500)
	now := time.Now()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range sigs {
			x := n*500 + i
			a := netip.AddrFrom4([4]byte{45, byte(x >> 16), byte(x >> 8), byte(x)}).String()
			sigs[i] = wire.Signal{Scenario: sshBF, Source: wire.Source{Scope: "Ip", Value: a, IP: a}, StartAt: now, StopAt: now, CreatedAt: now}
		}
		if code, body := r.do("POST", "/v3/signals", sigs, nil); code != http.StatusOK {
			b.Fatalf("%d %s", code, body)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "signals/s")
}

// BenchmarkPullStartup measures a startup pull of a 10000-address list.
func BenchmarkPullStartup(b *testing.B) {
	f := newFixture(b, "", nil)
	ctx := context.Background()
	for i := range 3 {
		f.srv.db.Exec(`INSERT INTO reporters (id, password_hash, enrolled, created_at) VALUES (?, 'x', 1, ?)`, fmt.Sprint("s", i), time.Now().Unix())
		var reps []Report
		for x := range 10000 {
			reps = append(reps, Report{netip.AddrFrom4([4]byte{45, 1, byte(x >> 8), byte(x)}), sshBF})
		}
		if err := f.srv.Ingest(ctx, fmt.Sprint("s", i), netip.AddrFrom4([4]byte{127, byte(i), 0, 2}), reps); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	res := f.evaluate(b)
	b.Logf("evaluate listing %d addresses: %s", res.Listed, time.Since(start))
	start = time.Now()
	res = f.evaluate(b)
	b.Logf("evaluate again, nothing to change (%+v): %s", res, time.Since(start))
	r := f.reporter(b, "puller", "127.9.0.2")
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if got := r.pull(true); len(got.New) != 1 || len(got.New[0].Decisions) != 10000 {
			b.Fatalf("pulled %d groups", len(got.New))
		}
	}
}
