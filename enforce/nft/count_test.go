package nft

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/testutil"
)

func counts(tb testing.TB, b *Backend) map[string]int {
	tb.Helper()
	got, err := b.CountElements(context.Background())
	if err != nil {
		tb.Fatalf("CountElements: %v", err)
	}
	return got
}

// TestCountElementsReadsTheKernel: counts follow what the kernel holds,
// whoever changed it, with a range counted once.
func TestCountElementsReadsTheKernel(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	if d := cmp.Diff(map[string]int{"ban4": 0, "ban6": 0, "ban4_range": 0, "ban6_range": 0}, counts(t, b)); d != "" {
		t.Errorf("empty table (-want +got):\n%s", d)
	}
	hour := time.Now().Add(time.Hour)
	d := singlesDiff(5000)
	d.Set = append(d.Set, entry("2001:db8::2/128", hour), entry("2001:db8::3/128", time.Time{}),
		entry("198.51.100.0/24", hour), entry("203.0.113.0/28", hour), entry("2001:db8:1::/48", hour))
	apply(t, b, d)
	want := map[string]int{"ban4": 5000, "ban6": 2, "ban4_range": 2, "ban6_range": 1}
	if d := cmp.Diff(want, counts(t, b)); d != "" {
		t.Errorf("after Apply (-want +got):\n%s", d)
	}

	// Behind moat's back: the counts say what the kernel holds, not what
	// moat wrote.
	nft(t, ns, "delete", "element", "inet", "moat", "ban4", "{ 198.18.0.0, 198.18.0.1, 198.18.0.2 }")
	nft(t, ns, "delete", "element", "inet", "moat", "ban4_range", "{ 198.51.100.0/24 }")
	nft(t, ns, "add", "element", "inet", "moat", "ban6", "{ 2001:db8::9 timeout 1h }")
	want = map[string]int{"ban4": 4997, "ban6": 3, "ban4_range": 1, "ban6_range": 1}
	if d := cmp.Diff(want, counts(t, b)); d != "" {
		t.Errorf("after changes behind moat's back (-want +got):\n%s", d)
	}
	nft(t, ns, "delete", "chain", "inet", "moat", "moat-prerouting")
	nft(t, ns, "delete", "set", "inet", "moat", "ban6_range")
	want["ban6_range"] = 0
	if d := cmp.Diff(want, counts(t, b)); d != "" {
		t.Errorf("after deleting a set (-want +got):\n%s", d)
	}

	// Counting runs beside the writer (on its own socket): run both at once
	// under the race detector.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			if _, err := b.CountElements(context.Background()); err != nil {
				t.Errorf("CountElements during Apply: %v", err)
			}
		}
	}()
	apply(t, b, enforce.Diff{Delete: []netip.Prefix{netip.MustParsePrefix("198.18.0.3/32")}})
	<-done
}

// BenchmarkCountElements is one count of the kernel's elements, what a
// metrics refresh costs, with n entries loaded (1% ranges, 20% IPv6).
func BenchmarkCountElements(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ns := testutil.NewNetNS(b)
			be := openIn(b, ns, Config{})
			if err := be.Apply(context.Background(), mixDiff(n)); err != nil {
				b.Fatal(err)
			}
			var got map[string]int
			for b.Loop() {
				got = counts(b, be)
			}
			total := 0
			for _, c := range got {
				total += c
			}
			if total != n {
				b.Fatalf("counted %d elements (%v), loaded %d", total, got, n)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/count")
		})
	}
}
