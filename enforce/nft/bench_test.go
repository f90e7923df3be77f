package nft

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/testutil"
)

// benchAddrs4 returns n distinct IPv4 addresses: 198.18.0.0/15 first, then
// 240.0.0.0/4 (reserved, never routed) once the /15 runs out. They are only
// set elements in a throwaway namespace; no traffic goes to them.
func benchAddrs4(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		var v uint32
		if i < 1<<17 {
			v = 198<<24 | 18<<16 + uint32(i)
		} else {
			v = 240<<24 + uint32(i-1<<17)
		}
		out[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return out
}

// mixDiff builds n entries: 1% ranges (/28 v4 and /64 v6), 20% IPv6, the
// rest single IPv4, with expiries spread over an hour.
func mixDiff(n int) enforce.Diff {
	now := time.Now()
	var d enforce.Diff
	nr := n / 100
	n6 := n / 5
	n4 := n - nr - n6
	for i, a := range benchAddrs4(n4) {
		d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(a, 32), Expiry: now.Add(time.Hour + time.Duration(i%3600)*time.Second)})
	}
	for i := range n6 {
		b := netip.MustParseAddr("2001:db8::").As16()
		b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom16(b), 128), Expiry: now.Add(2 * time.Hour)})
	}
	for i := range nr {
		if i%5 == 0 {
			b := netip.MustParseAddr("2001:db8:8000::").As16()
			b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom16(b), 64), Expiry: now.Add(time.Hour)})
			continue
		}
		v := uint32(250)<<24 + uint32(i)<<4
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(a, 28), Expiry: now.Add(time.Hour + time.Duration(i%7)*time.Minute)})
	}
	return d
}

func singlesDiff(n int) enforce.Diff {
	exp := time.Now().Add(time.Hour)
	d := enforce.Diff{Set: make([]enforce.Entry, 0, n)}
	for _, a := range benchAddrs4(n) {
		d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(a, 32), Expiry: exp})
	}
	return d
}

// BenchmarkLoad loads n entries into an empty table in one Apply.
func BenchmarkLoad(b *testing.B) {
	for _, bc := range []struct {
		name string
		diff func(int) enforce.Diff
		n    int
	}{
		{"v4-10k", singlesDiff, 10_000},
		{"v4-100k", singlesDiff, 100_000},
		{"v4-1M", singlesDiff, 1_000_000},
		{"mix-100k", mixDiff, 100_000},
		{"mix-1M", mixDiff, 1_000_000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ns := testutil.NewNetNS(b)
			cfg := Config{NetNS: nsFD(b, ns)}
			d := bc.diff(bc.n)
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				if err := Cleanup(context.Background(), cfg); err != nil {
					b.Fatal(err)
				}
				be, err := Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := be.Apply(context.Background(), d); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				_ = be.Close()
				b.StartTimer()
			}
			per := total / time.Duration(b.N)
			b.ReportMetric(float64(per.Milliseconds()), "total-ms")
			b.ReportMetric(float64(bc.n)/per.Seconds(), "elements/s")
		})
	}
}

// BenchmarkDecision measures one Apply of one new single address with 1M
// elements already loaded: the kernel half of "log line to dropped packet".
func BenchmarkDecision(b *testing.B) {
	ns := testutil.NewNetNS(b)
	be := openIn(b, ns, Config{})
	if err := be.Apply(context.Background(), singlesDiff(1_000_000)); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"new", "reban"} {
		b.Run(mode, func(b *testing.B) {
			// Addresses past the loaded million, in 240.0.0.0/4.
			next := benchAddrs4(1_000_000 + 20_000)[1_000_000:]
			var lat []time.Duration
			i := 0
			for b.Loop() {
				for range 1000 {
					a := next[i%len(next)]
					if mode == "reban" {
						a = next[i%100]
					}
					i++
					d := enforce.Diff{Set: []enforce.Entry{{Prefix: netip.PrefixFrom(a, 32), Expiry: time.Now().Add(time.Hour + time.Duration(i)*time.Millisecond)}}}
					start := time.Now()
					if err := be.Apply(context.Background(), d); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// kernelMemMiB reads Slab + VmallocUsed from /proc/meminfo.
func kernelMemMiB(tb testing.TB) float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var kib float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && (fields[0] == "Slab:" || fields[0] == "VmallocUsed:") {
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				tb.Fatal(fmt.Errorf("meminfo %q: %w", sc.Text(), err))
			}
			kib += v
		}
	}
	return kib / 1024
}

// BenchmarkKernelMemory reports the kernel memory 1M IPv4 elements take.
// The figure is host-wide, so other activity on the machine adds noise.
func BenchmarkKernelMemory(b *testing.B) {
	ns := testutil.NewNetNS(b)
	cfg := Config{NetNS: nsFD(b, ns)}
	d := singlesDiff(1_000_000)
	var grow float64
	for b.Loop() {
		b.StopTimer()
		if err := Cleanup(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		be, err := Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // let freed memory from the last round settle
		before := kernelMemMiB(b)
		b.StartTimer()
		if err := be.Apply(context.Background(), d); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		grow += kernelMemMiB(b) - before
		_ = be.Close()
		b.StartTimer()
	}
	b.ReportMetric(grow/float64(b.N), "kernel-MiB")
	b.ReportMetric(grow/float64(b.N)*(1<<20)/1e6, "B/element")
}

// BenchmarkList reads back 100k single IPv4 elements (the verify pass).
// A hash set dump costs O(n²) in the kernel, so 1M takes minutes and is
// left out.
func BenchmarkList(b *testing.B) {
	ns := testutil.NewNetNS(b)
	be := openIn(b, ns, Config{})
	const n = 100_000
	if err := be.Apply(context.Background(), singlesDiff(n)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := be.List(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != n {
			b.Fatalf("List returned %d entries, want %d", len(got), n)
		}
	}
	b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N)), "elements/s")
}
