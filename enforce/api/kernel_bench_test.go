package api

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/internal/testutil"
)

// kernelFixture is a fixture whose decisions go through a reconciler into
// moat's nftables table in a network namespace of its own.
func kernelFixture(b *testing.B) (*fixture, *enforce.Reconciler) {
	testutil.RequireRoot(b)
	ns := testutil.NewNetNS(b)
	fd, err := os.Open(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fd.Close() })
	be, err := nft.Open(context.Background(), nft.Config{NetNS: int(fd.Fd())})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	rec := enforce.NewReconciler(enforce.ReconcilerConfig{}, be)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-rec.Ready()
	return newFixtureOn(b, rec), rec
}

// BenchmarkAPIAddIntoKernel posts decisions to the admin API, as a script
// would, and counts them once the kernel holds them: one per request
// ("single") and 1000 per request ("bulk", an import).
func BenchmarkAPIAddIntoKernel(b *testing.B) {
	for _, per := range []int{1, 1000} {
		name := map[int]string{1: "single", 1000: "bulk"}[per]
		b.Run(name, func(b *testing.B) {
			f, rec := kernelFixture(b)
			c := f.admin.Client()
			n := 0
			for b.Loop() {
				var body strings.Builder
				body.WriteString(`{"decisions":[`)
				for j := range per {
					if j > 0 {
						body.WriteByte(',')
					}
					// 198.19/16, clear of the fixture's allowlist; past
					// 65536 the addresses are banned again.
					fmt.Fprintf(&body, `{"value":"198.19.%d.%d","duration":"1h"}`, byte(n>>8), byte(n))
					n++
				}
				body.WriteString(`]}`)
				f.postDecisions(b, c, body.String())
			}
			if st, want := rec.Stats(), int64(min(n, 1<<16)); st.Entries != want || st.ApplyErrors != 0 {
				b.Fatalf("reconciler: %d entries, %d apply errors; want %d, 0", st.Entries, st.ApplyErrors, want)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}
