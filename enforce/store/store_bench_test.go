package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Fill inserts n active ban decisions on distinct addresses of
// 198.18.0.0/15, then 2001:db8::/32, in batches, as a bulk import would.
func Fill(tb testing.TB, s *Store, n int) {
	tb.Helper()
	until := time.Now().Add(24 * time.Hour)
	const batch = 50000
	for i := 0; i < n; i += batch {
		ds := make([]model.Decision, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			var a netip.Addr
			// 198.18.0.0/15 holds 2^17 addresses; the rest go to IPv6.
			if j < 1<<17 {
				a = netip.AddrFrom4([4]byte{198, 18 + byte(j>>16)&1, byte(j >> 8), byte(j)})
			} else {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
			}
			ds = append(ds, model.Decision{Value: netip.PrefixFrom(a, a.BitLen()), Type: "ban", Origin: model.OriginList, Scenario: "crowdsecurity/ssh-bf", Until: until})
		}
		if err := s.InsertDecisions(context.Background(), ds); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkStore1M loads a million decisions and reports the insert rate
// and the store's size on disk.
func BenchmarkStore1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		s, err := Open(context.Background(), filepath.Join(b.TempDir(), FileName), Options{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		Fill(b, s, n)
		elapsed := time.Since(start)
		if _, err := s.w.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "inserts/s")
		b.ReportMetric(float64(s.Size())/(1<<20), "MiB")
		b.ReportMetric(float64(s.Size())/n, "bytes/decision")
		// Warm the read connection, then time the bouncer's "is this IP
		// banned" query.
		s.ListDecisions(context.Background(), Filter{IP: netip.MustParseAddr("198.18.1.1")})
		t0 := time.Now()
		const lookups = 1000
		for i := range lookups {
			recs, err := s.ListDecisions(context.Background(), Filter{IP: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})})
			if err != nil || len(recs) != 1 {
				b.Fatalf("lookup %d: %v, %v", i, recs, err)
			}
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/lookups, "ip-lookup-µs")
		s.Close()
	}
}
