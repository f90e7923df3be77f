package postgres

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

func benchBatch(n, from int) []AlertBatch {
	out := make([]AlertBatch, n)
	until := time.Now().Add(time.Hour)
	for i := range out {
		j := from + i
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
		out[i] = AlertBatch{
			Alert: model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: a.String(), EventsCount: 5,
				Events: []map[string]string{{"user": "root"}, {"user": "admin"}}, Meta: map[string]string{"service": "ssh"}},
			Decisions: []model.Decision{{Value: netip.PrefixFrom(a, 128), Type: "ban", Origin: model.OriginLocal, Scenario: "crowdsecurity/ssh-bf", Until: until}},
		}
	}
	return out
}

// BenchmarkInsertAlerts measures alerts stored per second, each with one
// decision: one at a time (InsertAlert, as the decision service stores a
// ban), in batches of 100 (InsertAlerts, a fleet server's pushes), and
// one at a time from 8 goroutines over two replicas; on a cluster that
// does not fsync (as tests run) and on one that does (as a server would).
func BenchmarkInsertAlerts(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name, settings := "nofsync", []string(nil)
		if durable {
			name, settings = "fsync", []string{"fsync=on", "full_page_writes=on"}
		}
		b.Run(name, func(b *testing.B) {
			pg := testutil.StartPostgres(b, settings...)
			s1, s2 := open(b, pg.DSN()), open(b, pg.DSN())
			ctx := context.Background()
			for _, size := range []int{1, 100} {
				b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
					next := 0
					start := time.Now()
					for b.Loop() {
						if _, err := s1.InsertAlerts(ctx, benchBatch(size, next)); err != nil {
							b.Fatal(err)
						}
						next += size
					}
					b.ReportMetric(float64(next)/time.Since(start).Seconds(), "alerts/s")
				})
			}
			b.Run("parallel=8", func(b *testing.B) {
				var mu sync.Mutex
				next := 0
				start := time.Now()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					mu.Lock()
					s := []*Store{s1, s2}[next%2]
					next++
					mu.Unlock()
					for pb.Next() {
						mu.Lock()
						from := 1<<24 + next
						next++
						mu.Unlock()
						if _, err := s.InsertAlerts(ctx, benchBatch(1, from)); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
			})
		})
	}
}

// BenchmarkNotifyWake measures how long after replica 1's insert starts a
// Wait on replica 2 returns: the insert's round trip and commit, the
// NOTIFY's delivery and the wake-up (an upper bound on commit to wake).
func BenchmarkNotifyWake(b *testing.B) {
	pg := testutil.StartPostgres(b)
	s1, s2 := open(b, pg.DSN()), open(b, pg.DSN())
	ctx := context.Background()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		after, err := s2.Seq(ctx)
		if err != nil {
			b.Fatal(err)
		}
		woke := make(chan time.Time, 1)
		go func() {
			if _, err := s2.Wait(ctx, after); err != nil {
				b.Error(err)
			}
			woke <- time.Now()
		}()
		start := time.Now()
		if _, err := s1.InsertAlerts(ctx, benchBatch(1, i)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-woke).Sub(start))
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
