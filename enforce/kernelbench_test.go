package enforce_test

// Kernel-path benchmarks across both backends, driven through the
// reconciler as moat drives them. Every benchmark needs root and works in
// throwaway network namespaces and bpffs pin directories of its own.
//
// Address plan. Traffic only ever flows between 198.18.0.0/23 addresses
// inside our namespaces. Map entries that never see a packet come from:
//   - 100.64.0.0/10 (CGNAT, 4M addresses) for the IPv4 singles of the load,
//     latency and memory benchmarks, which need up to 1M distinct addresses;
//   - 198.18.2.0-198.19.255.255 for the 100k entries of the drop benchmark;
//   - 2001:db8::/32 for every IPv6 entry.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// permute22 is a bijection on [0, 2^22) built from invertible steps (odd
// multiplications and xor-shifts modulo 2^22), so distinct indexes give
// distinct, well scattered addresses without a 4M-entry shuffle.
type permute22 struct{ m1, m2, add uint32 }

func newPermute22(rng *rand.Rand) permute22 {
	return permute22{m1: rng.Uint32() | 1, m2: rng.Uint32() | 1, add: rng.Uint32()}
}

func (p permute22) at(i uint32) uint32 {
	const mask = 1<<22 - 1
	x := i & mask
	x = x * p.m1 & mask
	x ^= x >> 11
	x = x * p.m2 & mask
	x ^= x >> 7
	return (x + p.add) & mask
}

// cgnat returns the i-th address of a random permutation of 100.64.0.0/10.
func (p permute22) cgnat(i int) netip.Addr {
	v := 100<<24 | 64<<16 | p.at(uint32(i))
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// splitmix64 is a bijection on uint64 (used for distinct IPv6 host parts).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// workload is a decision set and what the reconciler should make of it.
type workload struct {
	decisions []model.Decision
	// prefixes is the number of distinct prefixes (the reconciler's entries),
	// singles the number of distinct single addresses among them.
	prefixes, singles int
	// extra are further IPv4 singles outside the set, for new bans.
	extra []netip.Addr
}

// newWorkload builds n ban decisions. Without mix they are all distinct
// single IPv4 addresses. With mix, 1% are ranges and 20% IPv6 singles:
//   - IPv4 ranges are /16../24 inside 198.18.0.0/15 and overlap on purpose:
//     the /15 has room for only 512 /24s, and overlapping ranges are the
//     case that makes the nft backend normalise into disjoint segments and
//     the XDP trie nest prefixes;
//   - IPv6 ranges are /48../64, each inside its own 2001:db8:k::/48, so
//     they never overlap each other or the IPv6 singles (in 2001:db8:0::/48).
//
// Expiries are spread over an hour so the kernel timeouts differ.
func newWorkload(n int, mix bool, extra int, seed uint64) workload {
	rng := rand.New(rand.NewPCG(seed, 0x6d6f6174))
	perm := newPermute22(rng)
	tag := uint16(rng.Uint32())
	now := time.Now()
	w := workload{decisions: make([]model.Decision, 0, n)}
	seen := make(map[netip.Prefix]struct{}, n)
	v4 := 0
	for i := range n {
		var p netip.Prefix
		switch {
		case mix && i%100 == 0:
			k := i / 100
			if k%2 == 0 {
				bits := 16 + rng.IntN(9)
				a := netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), 0})
				p = netip.PrefixFrom(a, bits).Masked()
			} else {
				b := netip.MustParseAddr("2001:db8::").As16()
				b[4], b[5] = byte((k/2+1)>>8), byte(k/2+1)
				b[6], b[7] = byte(rng.IntN(256)), byte(rng.IntN(256))
				p = netip.PrefixFrom(netip.AddrFrom16(b), 48+rng.IntN(17)).Masked()
			}
		case mix && i%5 == 1:
			b := netip.MustParseAddr("2001:db8::").As16()
			b[6], b[7] = byte(tag>>8), byte(tag)
			h := splitmix64(uint64(i))
			for j := range 8 {
				b[8+j] = byte(h >> (8 * j))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 128)
		default:
			p = netip.PrefixFrom(perm.cgnat(v4), 32)
			v4++
		}
		if _, dup := seen[p]; !dup {
			seen[p] = struct{}{}
			if p.IsSingleIP() {
				w.singles++
			}
		}
		w.decisions = append(w.decisions, model.Decision{
			ID: int64(i + 1), Value: p, Type: "ban", Origin: model.OriginList, Scenario: "bench/load",
			Until: now.Add(time.Hour + time.Duration(i%3600)*time.Second),
		})
	}
	w.prefixes = len(seen)
	for j := range extra {
		w.extra = append(w.extra, perm.cgnat(v4+j))
	}
	return w
}

// rig is the namespace the backends enforce in: one end of a veth pair (the
// XDP program is attached to it, as in a deployment) and moat's nft table.
type rig struct {
	ns, peer *testutil.NetNS
	dev      string
	nsFD     int
	pinDir   string
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	testutil.RequireRoot(tb)
	r := &rig{ns: testutil.NewNetNS(tb), peer: testutil.NewNetNS(tb)}
	_, vb := testutil.VethPair(tb, r.peer, r.ns, []string{"198.18.0.2/24"}, []string{"198.18.0.1/24"})
	r.dev = vb.Name
	f, err := os.Open(r.ns.Path())
	if err != nil {
		tb.Fatalf("open netns: %v", err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	r.nsFD = int(f.Fd())
	r.pinDir = benchPinDir(tb)
	return r
}

// benchPinDir returns a fresh bpffs directory that is removed, with
// whatever moat pinned in it, when the benchmark ends.
func benchPinDir(tb testing.TB) string {
	tb.Helper()
	dir := "/sys/fs/bpf/" + testutil.RandName("moat-bench-", 10)
	tb.Cleanup(func() {
		if err := xdp.Cleanup(dir); err != nil {
			tb.Errorf("xdp cleanup: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("pin dir %s left behind (stat: %v)", dir, err)
		}
	})
	return dir
}

func (r *rig) nftConfig() nft.Config { return nft.Config{NetNS: r.nsFD} }

// open returns empty backends ("nft", "xdp" or "both") and a function that
// closes them and deletes their kernel state.
func (r *rig) open(tb testing.TB, which string) ([]enforce.Backend, func()) {
	tb.Helper()
	ctx := context.Background()
	var bes []enforce.Backend
	var closers []func() error
	if which == "nft" || which == "both" {
		if err := nft.Cleanup(ctx, r.nftConfig()); err != nil {
			tb.Fatal(err)
		}
		be, err := nft.Open(ctx, r.nftConfig())
		if err != nil {
			tb.Fatal(err)
		}
		bes = append(bes, be)
		closers = append(closers, be.Close, func() error { return nft.Cleanup(ctx, r.nftConfig()) })
	}
	if which == "xdp" || which == "both" {
		if err := xdp.Cleanup(r.pinDir); err != nil {
			tb.Fatal(err)
		}
		be := r.openXDP(tb)
		bes = append(bes, be)
		closers = append(closers, be.Close, func() error { return xdp.Cleanup(r.pinDir) })
	}
	return bes, func() {
		for _, c := range closers {
			if err := c(); err != nil {
				tb.Error(err)
			}
		}
	}
}

// openXDP opens the XDP backend inside the namespace of its interface.
func (r *rig) openXDP(tb testing.TB) *xdp.Backend {
	tb.Helper()
	var be *xdp.Backend
	err := r.ns.Do(func() error {
		var err error
		be, err = xdp.Open(context.Background(), xdp.Config{PinDir: r.pinDir, Interfaces: []string{r.dev}})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return be
}

// startReconciler runs a reconciler over bes and returns once its initial
// verify pass is over, so what follows measures decisions only.
func startReconciler(tb testing.TB, bes []enforce.Backend) (*enforce.Reconciler, func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rec := enforce.NewReconciler(enforce.ReconcilerConfig{}, bes...)
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("reconciler: %v", err)
		}
	}
	drift, err := rec.Verify(ctx)
	if err != nil || drift.Total() != 0 {
		stop()
		tb.Fatalf("initial verify: drift %d, err %v; want empty backends", drift.Total(), err)
	}
	return rec, stop
}

// checkHeld reads every backend back and compares it with the workload.
// XDP keeps prefixes as given; nft merges ranges into disjoint segments, so
// only its singles can be counted exactly.
func checkHeld(tb testing.TB, r *rig, bes []enforce.Backend, w workload) {
	tb.Helper()
	for _, be := range bes {
		if be.Name() == "nftables" && w.prefixes > 100_000 {
			r.sampleNft(tb, w)
			continue
		}
		held, err := be.List(context.Background())
		if err != nil {
			tb.Fatalf("%s: list: %v", be.Name(), err)
		}
		singles, ranges := 0, 0
		for _, e := range held {
			if e.Prefix.IsSingleIP() {
				singles++
			} else {
				ranges++
			}
		}
		if singles != w.singles {
			tb.Fatalf("%s holds %d single addresses, want %d", be.Name(), singles, w.singles)
		}
		if w.prefixes > w.singles && ranges == 0 {
			tb.Fatalf("%s holds no ranges, want some of %d", be.Name(), w.prefixes-w.singles)
		}
		if be.Name() == "xdp" && len(held) != w.prefixes {
			tb.Fatalf("xdp holds %d prefixes, want %d", len(held), w.prefixes)
		}
	}
}

// sampleNft checks a sample of the single addresses by deleting them with
// nft, which the kernel refuses (ENOENT, the whole transaction) if any is
// missing. Reading a million-element set back (List, or `nft get element`,
// which dumps the set into its cache first) takes minutes; a delete does
// not read the set. The rig is torn down right after.
func (r *rig) sampleNft(tb testing.TB, w workload) {
	tb.Helper()
	var v4, v6 []string
	for i := 0; i < len(w.decisions) && len(v4)+len(v6) < 64; i += len(w.decisions)/64 + 1 {
		p := w.decisions[i].Value
		switch {
		case !p.IsSingleIP():
		case p.Addr().Is4():
			v4 = append(v4, p.Addr().String())
		default:
			v6 = append(v6, p.Addr().String())
		}
	}
	for set, addrs := range map[string][]string{"ban4": v4, "ban6": v6} {
		if len(addrs) == 0 {
			continue
		}
		r.ns.Run(tb, "nft", "delete", "element", "inet", "moat", set, "{ "+strings.Join(addrs, ", ")+" }")
	}
}

var backendSets = []string{"nft", "xdp", "both"}

// BenchmarkLoad loads N decisions into empty backends with one reconciler
// Apply: the cold start of moat with a big community blocklist.
// "backend-ms" is the part spent in the backends (the reconciler's
// LastApply), the rest is the reconciler building its desired set and diff.
func BenchmarkLoad(b *testing.B) {
	for _, which := range backendSets {
		for _, size := range []struct {
			name string
			n    int
		}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}} {
			for _, kind := range []string{"v4", "mix"} {
				b.Run(which+"/"+size.name+"/"+kind, func(b *testing.B) {
					w := newWorkload(size.n, kind == "mix", 0, uint64(size.n))
					r := newRig(b)
					ctx := context.Background()
					var total, backend time.Duration
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						bes, closeAll := r.open(b, which)
						rec, stop := startReconciler(b, bes)
						// The set-up's garbage is not the load's to collect.
						runtime.GC()
						b.StartTimer()
						start := time.Now()
						err := rec.Apply(ctx, w.decisions, nil)
						took := time.Since(start)
						b.StopTimer()
						if err != nil {
							b.Fatalf("apply: %v", err)
						}
						st := rec.Stats()
						if st.ApplyErrors != 0 || st.Entries != int64(w.prefixes) {
							b.Fatalf("reconciler: %d apply errors, %d entries; want 0, %d", st.ApplyErrors, st.Entries, w.prefixes)
						}
						total += took
						backend += st.LastApply
						if i == 0 {
							checkHeld(b, r, bes, w)
						}
						stop()
						closeAll()
						b.StartTimer()
					}
					per := total / time.Duration(b.N)
					b.ReportMetric(float64(per.Microseconds())/1e3, "total-ms")
					b.ReportMetric(float64(backend.Microseconds())/1e3/float64(b.N), "backend-ms")
					b.ReportMetric(float64(size.n)/per.Seconds(), "decisions/s")
				})
			}
		}
	}
}

// BenchmarkDecisionLatency measures one new ban from reconciler Apply to
// every backend holding it, with 1M entries loaded. Each iteration applies
// 1000 decisions one at a time; past the pool of fresh addresses, decisions
// re-ban pool addresses with a later expiry (also one kernel change each).
func BenchmarkDecisionLatency(b *testing.B) {
	const loaded, pool = 1_000_000, 20_000
	for _, which := range backendSets {
		b.Run(which, func(b *testing.B) {
			w := newWorkload(loaded, false, pool, 7)
			r := newRig(b)
			ctx := context.Background()
			bes, closeAll := r.open(b, which)
			defer closeAll()
			rec, stop := startReconciler(b, bes)
			defer stop()
			if err := rec.Apply(ctx, w.decisions, nil); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			next := 0
			for b.Loop() {
				for range 1000 {
					d := model.Decision{
						ID: int64(loaded + 1 + next), Value: netip.PrefixFrom(w.extra[next%pool], 32), Type: "ban",
						Origin: model.OriginCLI, Scenario: "bench/latency", Until: time.Now().Add(2*time.Hour + time.Duration(next)*time.Second),
					}
					next++
					start := time.Now()
					if err := rec.Apply(ctx, []model.Decision{d}, nil); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
			}
			st := rec.Stats()
			if want := int64(loaded + min(next, pool)); st.Entries != want || st.ApplyErrors != 0 {
				b.Fatalf("reconciler: %d entries, %d apply errors; want %d, 0", st.Entries, st.ApplyErrors, want)
			}
			if want := uint64(1 + next); st.Batches < want {
				b.Fatalf("reconciler applied %d batches, want at least %d (one per decision)", st.Batches, want)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
		})
	}
}

// BenchmarkKernelMemory reports the kernel memory (Slab + VmallocUsed +
// Percpu from /proc/meminfo) that 1M single IPv4 bans take in each backend,
// and, for both together, the resident size of this process holding them
// (reconciler state, backend bookkeeping and the decision list itself;
// rss-growth leaves out the decision list, built before). The
// kernel figures are host-wide: other work on the machine adds noise.
func BenchmarkKernelMemory(b *testing.B) {
	for _, which := range backendSets {
		b.Run(which, func(b *testing.B) {
			w := newWorkload(1_000_000, false, 0, 11)
			r := newRig(b)
			ctx := context.Background()
			var empty, full, rss, rssGrowth float64
			for i := 0; i < b.N; i++ {
				// Memory freed by earlier rounds goes back asynchronously
				// (RCU, deferred map frees); let it settle first.
				debug.FreeOSMemory()
				rss0 := rssMiB(b)
				time.Sleep(2 * time.Second)
				m0 := kernelMemMiB(b)
				bes, closeAll := r.open(b, which)
				rec, stop := startReconciler(b, bes)
				m1 := kernelMemMiB(b)
				if err := rec.Apply(ctx, w.decisions, nil); err != nil {
					b.Fatal(err)
				}
				m2 := kernelMemMiB(b)
				if st := rec.Stats(); st.Entries != int64(w.prefixes) {
					b.Fatalf("reconciler holds %d entries, want %d", st.Entries, w.prefixes)
				}
				empty += m1 - m0
				full += m2 - m1
				if which == "both" {
					debug.FreeOSMemory()
					r := rssMiB(b)
					rss += r
					rssGrowth += r - rss0
				}
				stop()
				closeAll()
				runtime.KeepAlive(w)
			}
			n := float64(b.N)
			if full/n <= 0 {
				b.Fatalf("kernel memory did not grow with 1M entries (%.1f MiB)", full/n)
			}
			b.ReportMetric(empty/n, "empty-MiB")
			b.ReportMetric(full/n, "1M-MiB")
			b.ReportMetric(full/n*(1<<20)/1e6, "B/entry")
			if which == "both" {
				b.ReportMetric(rss/n, "rss-MiB")
				b.ReportMetric(rssGrowth/n, "rss-growth-MiB")
			}
		})
	}
}

// kernelMemMiB sums the /proc/meminfo fields nft sets and BPF maps
// allocate from.
func kernelMemMiB(tb testing.TB) float64 {
	tb.Helper()
	kib, err := procKiB("/proc/meminfo", "Slab", "VmallocUsed", "Percpu")
	if err != nil {
		tb.Fatal(err)
	}
	return float64(kib) / 1024
}

func rssMiB(tb testing.TB) float64 {
	tb.Helper()
	kib, err := procKiB("/proc/self/status", "VmRSS")
	if err != nil {
		tb.Fatal(err)
	}
	return float64(kib) / 1024
}

// procKiB sums "Name: N kB" fields of a /proc file; every field must exist.
func procKiB(path string, names ...string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var sum int64
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", path, name, err)
		}
		sum += v
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if found != len(names) {
		return 0, fmt.Errorf("%s: found %d of the fields %v", path, found, names)
	}
	return sum, nil
}

// Drop-cost lab addresses: the sender a holds 198.18.0.2 and floods from
// the banned 198.18.0.10; the receiver holds 198.18.0.1 with UDP port 9
// closed.
const (
	dropDst    = "198.18.0.1"
	dropSender = "198.18.0.2"
	dropBanned = "198.18.0.10"
	// dropSlot is one flood; every config gets dropReps slots, interleaved,
	// so 6 s each in total.
	dropSlot = 2 * time.Second
	dropReps = 3
	// userHZ is the unit of /proc/stat (USER_HZ is 100 on every Linux ABI
	// moat supports).
	userHZ = 100
)

type floodLab struct {
	a, r    *testutil.NetNS
	va, vb  testutil.Veth
	rFD     int
	pinDir  string
	cfgFile string
	others  []netip.Addr
}

func newFloodLab(b *testing.B) *floodLab {
	b.Helper()
	testutil.RequireRoot(b)
	l := &floodLab{a: testutil.NewNetNS(b), r: testutil.NewNetNS(b)}
	l.va, l.vb = testutil.VethPair(b, l.a, l.r, []string{dropSender + "/24"}, []string{dropDst + "/24"})
	// Static neighbours: ARP for (or ICMP errors towards) the banned source
	// must not depend on packets the configs drop.
	l.a.Run(b, "ip", "neigh", "replace", dropDst, "lladdr", l.vb.MAC, "dev", l.va.Name, "nud", "permanent")
	for _, s := range []string{dropSender, dropBanned} {
		l.r.Run(b, "ip", "neigh", "replace", s, "lladdr", l.va.MAC, "dev", l.vb.Name, "nud", "permanent")
	}
	f, err := os.Open(l.r.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	l.rFD = int(f.Fd())
	l.pinDir = benchPinDir(b)

	// 100k distinct addresses from 198.18.2.0-198.19.255.255, away from
	// the lab's own 198.18.0.0/23.
	rng := rand.New(rand.NewPCG(3, 0x6d6f6174))
	for _, k := range rng.Perm(1<<17 - 512)[:100_000] {
		v := uint32(198)<<24 | 18<<16 + 512 + uint32(k)
		l.others = append(l.others, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
	}

	dir := b.TempDir()
	// 60-byte frames: 14 Ethernet + 20 IPv4 + 8 UDP + 18 payload.
	pkt := fmt.Sprintf("{ eth(da=%s, sa=%s, type=0x0800), ipv4(saddr=%s, daddr=%s, ttl=64, df), udp(sp=40000, dp=9), fill(0x41, 18) }\n",
		l.vb.MAC, l.va.MAC, dropBanned, dropDst)
	l.cfgFile = filepath.Join(dir, "udp.cfg")
	if err := os.WriteFile(l.cfgFile, []byte(pkt), 0o600); err != nil {
		b.Fatal(err)
	}
	waitOperUp(b, l.a, l.va.Name)
	waitOperUp(b, l.r, l.vb.Name)
	return l
}

func waitOperUp(tb testing.TB, ns *testutil.NetNS, dev string) {
	tb.Helper()
	for range 300 {
		if out, err := ns.Command("cat", "/sys/class/net/"+dev+"/operstate").Output(); err == nil && string(out) == "up\n" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("%s did not come up", dev)
}

func (l *floodLab) entries() []enforce.Entry {
	exp := time.Now().Add(time.Hour)
	out := make([]enforce.Entry, 0, len(l.others)+1)
	for _, a := range append(l.others, netip.MustParseAddr(dropBanned)) {
		out = append(out, enforce.Entry{Prefix: netip.PrefixFrom(a, 32), Expiry: exp})
	}
	return out
}

// crowdsecRuleset is crowdsec-firewall-bouncer's default nftables layout
// with the same entries moat holds, as an `nft -f` file.
func (l *floodLab) crowdsecRuleset() string {
	var sb strings.Builder
	sb.WriteString("table ip crowdsec {\n\tset crowdsec-blacklists { type ipv4_addr; flags timeout; }\n" +
		"\tchain crowdsec-chain { type filter hook input priority filter; policy accept; ip saddr @crowdsec-blacklists drop; }\n}\n")
	all := append(slices.Clone(l.others), netip.MustParseAddr(dropBanned))
	for chunk := range slices.Chunk(all, 10_000) {
		sb.WriteString("add element ip crowdsec crowdsec-blacklists { ")
		for i, a := range chunk {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(a.String())
			sb.WriteString(" timeout 1h")
		}
		sb.WriteString(" }\n")
	}
	return sb.String()
}

// dropConfig is one way of (not) dropping: on installs it in the receiver
// and returns how many packets it dropped so far (-1: it cannot tell) and
// how to remove it again.
type dropConfig struct {
	name string
	on   func(b *testing.B) (dropped func() int64, off func())
}

func (l *floodLab) configs(b *testing.B) []dropConfig {
	ctx := context.Background()
	entries := l.entries()
	rulesFile := filepath.Join(b.TempDir(), "crowdsec.nft")
	if err := os.WriteFile(rulesFile, []byte(l.crowdsecRuleset()), 0o600); err != nil {
		b.Fatal(err)
	}
	return []dropConfig{
		{name: "none", on: func(*testing.B) (func() int64, func()) {
			return func() int64 { return -1 }, func() {}
		}},
		{name: "moat-nft", on: func(b *testing.B) (func() int64, func()) {
			cfg := nft.Config{NetNS: l.rFD}
			be, err := nft.Open(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := be.Apply(ctx, enforce.Diff{Set: entries}); err != nil {
				b.Fatal(err)
			}
			return func() int64 {
					cs, err := be.Counters(ctx)
					if err != nil {
						b.Fatal(err)
					}
					return int64(cs["ban4"].Packets)
				}, func() {
					_ = be.Close()
					if err := nft.Cleanup(ctx, cfg); err != nil {
						b.Fatal(err)
					}
				}
		}},
		{name: "crowdsec", on: func(b *testing.B) (func() int64, func()) {
			l.r.Run(b, "nft", "-f", rulesFile)
			return func() int64 { return -1 }, func() { l.r.Run(b, "nft", "delete", "table", "ip", "crowdsec") }
		}},
		{name: "xdp", on: func(b *testing.B) (func() int64, func()) {
			var be *xdp.Backend
			err := l.r.Do(func() error {
				var err error
				be, err = xdp.Open(ctx, xdp.Config{PinDir: l.pinDir, Interfaces: []string{l.vb.Name}})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			if mode := be.Modes()[l.vb.Name]; mode != "native" {
				b.Fatalf("xdp attached in %q mode on veth, want native", mode)
			}
			if err := be.Apply(ctx, enforce.Diff{Set: entries}); err != nil {
				b.Fatal(err)
			}
			return func() int64 {
					c, err := be.Counters()
					if err != nil {
						b.Fatal(err)
					}
					return int64(c.DroppedPackets)
				}, func() {
					_ = be.Close()
					if err := xdp.Cleanup(l.pinDir); err != nil {
						b.Fatal(err)
					}
				}
		}},
	}
}

// floodResult is one flood slot.
type floodResult struct {
	packets, noPorts, dropped int64
	softirq                   time.Duration
	took                      time.Duration
}

// flood runs trafgen for dropSlot and measures the softirq time (all CPUs)
// and the packets that crossed the veth (the sender's tx counter: veth
// counts a packet only once the peer took it).
func (l *floodLab) flood(b *testing.B, dropped func() int64) floodResult {
	b.Helper()
	tx0, nop0, d0 := l.txPackets(b), l.udpNoPorts(b), dropped()
	s0 := softirq(b)
	start := time.Now()
	cmd := l.a.Command("trafgen", "--dev", l.va.Name, "--no-sock-mem", "--notouch-irq", "-P", "1", "-C", "-i", l.cfgFile)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// trafgen forks its sender: run it in a process group of its own and
	// interrupt the whole group, as a terminal would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("trafgen: %v", err)
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	time.Sleep(dropSlot)
	_ = syscall.Kill(-pgid, syscall.SIGINT)
	select {
	case err := <-waited:
		if err != nil {
			b.Fatalf("trafgen: %v: %s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-waited
		b.Fatalf("trafgen ignored SIGINT: %s", out.String())
	}
	took := time.Since(start)
	s1 := softirq(b)
	res := floodResult{
		packets: l.txPackets(b) - tx0, noPorts: l.udpNoPorts(b) - nop0,
		softirq: s1 - s0, took: took, dropped: -1,
	}
	if d0 >= 0 {
		res.dropped = dropped() - d0
	}
	return res
}

// softirq is the softirq time of all CPUs from /proc/stat.
func softirq(tb testing.TB) time.Duration {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		tb.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	ticks, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		tb.Fatalf("/proc/stat softirq: %v", err)
	}
	return time.Duration(ticks) * time.Second / userHZ
}

func (l *floodLab) txPackets(tb testing.TB) int64 {
	tb.Helper()
	out, err := l.a.Command("cat", "/sys/class/net/"+l.va.Name+"/statistics/tx_packets").Output()
	if err != nil {
		tb.Fatalf("read tx_packets: %v", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		tb.Fatalf("tx_packets %q: %v", out, err)
	}
	return v
}

// udpNoPorts is the receiver's count of datagrams for closed ports: what
// reached the UDP layer instead of being dropped.
func (l *floodLab) udpNoPorts(tb testing.TB) int64 {
	tb.Helper()
	out, err := l.r.Command("cat", "/proc/net/snmp").Output()
	if err != nil {
		tb.Fatalf("read snmp: %v", err)
	}
	var head []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "NoPorts" && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					tb.Fatalf("Udp NoPorts %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	tb.Fatal("no Udp NoPorts in /proc/net/snmp")
	return 0
}

// BenchmarkDropCost floods UDP from a banned source through a veth pair and
// reports the receive-side softirq time per packet for moat's nft chain
// (inet prerouting, priority raw, hash set), crowdsec-firewall-bouncer's
// default chain (ip input, priority filter), moat's XDP program (native on
// veth) and nothing dropping (UDP to a closed port), each with 100k other
// entries loaded. The configs take turns, in a rotating order, so noise
// from the rest of the machine hits them alike.
func BenchmarkDropCost(b *testing.B) {
	l := newFloodLab(b)
	configs := l.configs(b)
	perPkt := map[string][]float64{}
	net := map[string][]float64{}
	pps := map[string][]float64{}
	var idle []float64
	for b.Loop() {
		for rep := range dropReps {
			// The softirq time the rest of the machine spends meanwhile
			// (timers, RCU, other developers' traffic) is in every figure;
			// an idle slot per round measures it, for the net figures.
			s0, t0 := softirq(b), time.Now()
			time.Sleep(dropSlot)
			idleRate := float64(softirq(b)-s0) / float64(time.Since(t0))
			idle = append(idle, idleRate)
			for k := range configs {
				c := configs[(k+rep)%len(configs)]
				dropped, off := c.on(b)
				res := l.flood(b, dropped)
				off()
				if res.packets < 10_000 {
					b.Fatalf("%s: only %d packets crossed the veth", c.name, res.packets)
				}
				switch {
				case c.name == "none" && res.noPorts < res.packets/2:
					b.Fatalf("none: %d of %d packets reached UDP, want most", res.noPorts, res.packets)
				case c.name != "none" && res.noPorts > res.packets/100:
					b.Fatalf("%s: %d of %d packets reached UDP, want them dropped", c.name, res.noPorts, res.packets)
				case res.dropped >= 0 && res.dropped < res.packets*9/10:
					b.Fatalf("%s: drop counter moved by %d for %d packets", c.name, res.dropped, res.packets)
				}
				perPkt[c.name] = append(perPkt[c.name], float64(res.softirq.Nanoseconds())/float64(res.packets))
				net[c.name] = append(net[c.name], (float64(res.softirq)-idleRate*float64(res.took))/float64(res.packets))
				pps[c.name] = append(pps[c.name], float64(res.packets)/res.took.Seconds())
			}
		}
	}
	med := map[string]float64{}
	for _, c := range configs {
		med[c.name] = median(perPkt[c.name])
		b.ReportMetric(med[c.name], c.name+"-ns/pkt")
		b.ReportMetric(median(net[c.name]), c.name+"-net-ns/pkt")
		b.ReportMetric(median(pps[c.name])/1e6, c.name+"-Mpps")
	}
	b.ReportMetric(median(idle)*100, "idle-softirq-%")
	for _, q := range [][2]string{{"crowdsec", "moat-nft"}, {"crowdsec", "xdp"}, {"none", "moat-nft"}, {"none", "xdp"}, {"moat-nft", "xdp"}} {
		b.ReportMetric(med[q[0]]/med[q[1]], q[0]+"/"+q[1])
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
