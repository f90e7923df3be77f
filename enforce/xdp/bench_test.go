package xdp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/bpf"
	"github.com/moatsec/moat/enforce"
)

// loadSet returns n distinct entries. IPv4 singles are taken from
// 240.0.0.0/4 (reserved, never a real host; 198.18.0.0/15 is too small for
// 1M): they only fill maps and never appear in traffic. With mix, 1% are
// ranges and 20% are IPv6 (in 2001:db8::/32).
func loadSet(n int, mix bool) []enforce.Entry {
	out := make([]enforce.Entry, 0, n)
	exp := time.Now().Add(time.Hour)
	for i := range n {
		var p netip.Prefix
		switch {
		case mix && i%100 == 0: // 1% ranges, half of them IPv6
			k := i / 100
			if k%2 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xf0, 5: byte(k >> 8), 6: byte(k)}), 56)
			} else {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{250, byte(k >> 8), byte(k), 0}), 24)
			}
		case mix && i%5 == 1: // 20% IPv6 singles
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xa0, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), 128)
		default:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{240, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		}
		e := enforce.Entry{Prefix: p}
		if i%2 == 0 {
			e.Expiry = exp
		}
		out = append(out, e)
	}
	return out
}

func BenchmarkLoad(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		mix  bool
	}{
		{"v4-10k", 10_000, false},
		{"v4-100k", 100_000, false},
		{"v4-1M", 1_000_000, false},
		{"mix-100k", 100_000, true},
		{"mix-1M", 1_000_000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			set := loadSet(bc.n, bc.mix)
			ctx := context.Background()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := testPinDir(b)
				be, err := Open(ctx, Config{PinDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				if err := be.Apply(ctx, enforce.Diff{Set: set}); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
				b.StopTimer()
				if i == 0 {
					list, err := be.List(ctx)
					if err != nil || len(list) != bc.n {
						b.Fatalf("after load: %d entries, err %v; want %d", len(list), err, bc.n)
					}
				}
				be.Close()
				if err := Cleanup(dir); err != nil {
					b.Fatal(err)
				}
			}
			per := total / time.Duration(b.N)
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/load")
			b.ReportMetric(float64(bc.n)/per.Seconds(), "entries/s")
		})
	}
}

// BenchmarkApplyOne measures the latency of a one-entry Apply (a new ban or
// a moved expiry) into maps holding 1M entries.
func BenchmarkApplyOne(b *testing.B) {
	ctx := context.Background()
	be, set := openLoaded(b, 1_000_000)
	var samples []time.Duration
	apply := func(i int) {
		e := set[(i*7919)%len(set)]
		e.Expiry = time.Now().Add(time.Duration(i+1) * time.Second)
		t0 := time.Now()
		if err := be.Apply(ctx, enforce.Diff{Set: []enforce.Entry{e}}); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply(i)
	}
	b.StopTimer()
	for i := len(samples); i < 1000; i++ {
		apply(i)
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkProgRunTime sends UDP packets through a veth into the XDP program
// while the maps hold 1M singles and 10k ranges, and reports the program's
// own run time per packet as the kernel accounts it (BPF_STATS_RUN_TIME).
// "pass" misses both the hash map and the trie; "drop" hits the hash map.
func BenchmarkProgRunTime(b *testing.B) {
	const banned, passed = "198.18.0.10", "198.18.0.11"
	l := newLab(b, banned, passed)
	be := l.open(b, testPinDir(b))
	defer be.Close()
	ctx := context.Background()
	set := loadSet(1_000_000, false)
	for i := range 10_000 {
		set = append(set, enforce.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{250, byte(i >> 8), byte(i), 0}), 24)})
	}
	set = append(set, single(banned, time.Time{}))
	if err := be.Apply(ctx, enforce.Diff{Set: set}); err != nil {
		b.Fatal(err)
	}
	stats, err := bpf.EnableRunTimeStats()
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()

	// sparse: one datagram per socket write, a few µs apart, so caches are
	// cold-ish; flood: trafgen back to back, as under attack.
	for _, bc := range []struct{ name, src string }{
		{"sparse-pass", passed}, {"sparse-drop", banned},
		{"flood-pass", passed}, {"flood-drop", banned},
	} {
		b.Run(bc.name, func(b *testing.B) {
			before, err := be.f.RunStats()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if strings.HasPrefix(bc.name, "flood") {
				l.flood(b, bc.src, b.N)
			} else {
				l.sendFast(b, bc.src, b.N)
			}
			b.StopTimer()
			time.Sleep(20 * time.Millisecond)
			after, err := be.f.RunStats()
			if err != nil {
				b.Fatal(err)
			}
			runs := after.RunCount - before.RunCount
			if runs == 0 {
				b.Fatal("the program did not run")
			}
			b.ReportMetric(float64((after.RunTime-before.RunTime).Nanoseconds())/float64(runs), "ns/pkt-prog")
			b.ReportMetric(float64(runs), "prog-runs")
		})
	}
}

// sendFast writes n datagrams from src without pacing. A full veth ring
// drops at the sender; that only means fewer program runs, which the run
// count reflects.
func (l *lab) sendFast(b *testing.B, src string, n int) {
	var conn *net.UDPConn
	err := l.a.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(dst4), 9)))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 18)
	for range n {
		_, _ = conn.Write(payload)
	}
}

// flood sends n IPv4 UDP frames from src with trafgen (flags per
// kernel-notes: never touch global sysctls or IRQ affinity).
func (l *lab) flood(b *testing.B, src string, n int) {
	pkt := fmt.Sprintf("{ eth(da=%s, sa=%s), ipv4(sa=%s, da=%s), udp(sp=4000, dp=9), fill(0x00, 18) }",
		l.vb.MAC, l.va.MAC, src, dst4)
	n = max(n, 10_000) // the per-packet figure needs a sample, whatever b.N
	cmd := l.a.Command("trafgen", "--dev", l.va.Name, "--no-sock-mem", "--notouch-irq", "-P", "1", "-C",
		"-n", strconv.Itoa(n), pkt)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("trafgen: %v: %s", err, out)
	}
}

// BenchmarkKernelMemory reports kernel memory (unreclaimable slab + vmalloc
// + percpu, from /proc/meminfo) taken by empty maps of the default size and by 1M IPv4
// singles. Other activity on the machine adds noise to both figures.
func BenchmarkKernelMemory(b *testing.B) {
	ctx := context.Background()
	set := loadSet(1_000_000, false)
	for i := 0; i < b.N; i++ {
		dir := testPinDir(b)
		// Maps freed earlier (by other benchmarks) are released
		// asynchronously; let that finish before the baseline.
		time.Sleep(2 * time.Second)
		m0 := kernelMem(b)
		be, err := Open(ctx, Config{PinDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		m1 := kernelMem(b)
		if err := be.Apply(ctx, enforce.Diff{Set: set}); err != nil {
			b.Fatal(err)
		}
		m2 := kernelMem(b)
		be.Close()
		if err := Cleanup(dir); err != nil {
			b.Fatal(err)
		}
		const mib = 1 << 20
		b.ReportMetric(float64(m1-m0)/mib, "MiB-empty")
		b.ReportMetric(float64(m2-m1)/mib, "MiB-1M-entries")
		b.ReportMetric(float64(m2-m0)/mib, "MiB-total")
		b.ReportMetric(float64(m2-m1)/1e6, "B/entry")
	}
}

// kernelMem sums the /proc/meminfo fields that BPF maps allocate from.
func kernelMem(tb testing.TB) int64 {
	tb.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var sum int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		switch name {
		case "SUnreclaim", "VmallocUsed", "Percpu": // map memory is never reclaimable
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(fmt.Errorf("meminfo %s: %w", name, err))
			}
			sum += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return sum
}

// BenchmarkList measures reading back 1M entries (the mix), as the
// reconciler does after a restart.
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	be, set := openLoaded(b, 1_000_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list, err := be.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(list) != len(set) {
			b.Fatalf("List: %d entries, want %d", len(list), len(set))
		}
	}
	b.ReportMetric(float64(len(set))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkCountElements is one count of the maps' entries with 1M loaded
// (the mix): what a metrics refresh costs.
func BenchmarkCountElements(b *testing.B) {
	ctx := context.Background()
	be, set := openLoaded(b, 1_000_000)
	for b.Loop() {
		got, err := be.CountElements(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n := got["ban4"] + got["ban6"] + got["ban4_range"] + got["ban6_range"]; n != len(set) {
			b.Fatalf("counted %d (%v), loaded %d", n, got, len(set))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/count")
}

// openLoaded opens a backend on the benchmark's pins holding n entries of
// the mix; it closes when the benchmark ends.
func openLoaded(b *testing.B, n int) (*Backend, []enforce.Entry) {
	b.Helper()
	be, err := Open(context.Background(), Config{PinDir: testPinDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	set := loadSet(n, true)
	if err := be.Apply(context.Background(), enforce.Diff{Set: set}); err != nil {
		b.Fatal(err)
	}
	return be, set
}
