package nft

import (
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// openIn opens a backend working inside ns (through a namespace fd, so the
// test's own thread never switches namespaces).
func openIn(tb testing.TB, ns *testutil.NetNS, cfg Config) *Backend {
	tb.Helper()
	cfg.NetNS = nsFD(tb, ns)
	b, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func nsFD(tb testing.TB, ns *testutil.NetNS) int {
	tb.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		tb.Fatalf("open netns: %v", err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return int(f.Fd())
}

func nft(tb testing.TB, ns *testutil.NetNS, args ...string) string {
	tb.Helper()
	return ns.Run(tb, append([]string{"nft"}, args...)...)
}

func apply(tb testing.TB, b *Backend, d enforce.Diff) {
	tb.Helper()
	if err := b.Apply(context.Background(), d); err != nil {
		tb.Fatalf("Apply: %v", err)
	}
}

func list(tb testing.TB, b *Backend) []enforce.Entry {
	tb.Helper()
	got, err := b.List(context.Background())
	if err != nil {
		tb.Fatalf("List: %v", err)
	}
	slices.SortFunc(got, func(x, y enforce.Entry) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return x.Prefix.Bits() - y.Prefix.Bits()
	})
	return got
}

func entry(p string, exp time.Time) enforce.Entry {
	return enforce.Entry{Prefix: netip.MustParsePrefix(p), Expiry: exp}
}

// entriesCmp treats expiries read back from kernel timeouts as equal within
// the tolerance the backend itself uses.
var entriesCmp = cmp.Comparer(func(a, b enforce.Entry) bool {
	return a.Prefix == b.Prefix && sameSegmentExpiry(a.Expiry, b.Expiry, expiryTolerance)
})

func TestGoldenRuleset(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	got := nft(t, ns, "list", "table", "inet", "moat")
	golden := filepath.Join("testdata", "ruleset.nft")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("nft list table inet moat (-golden +got):\n%s", d)
	}

	// A second Open adopts the table: same ruleset, elements kept.
	exp := time.Now().Add(time.Hour)
	apply(t, b, enforce.Diff{Set: []enforce.Entry{
		entry("198.18.0.2/32", exp), entry("2001:db8::2/128", time.Time{}), entry("198.18.4.0/24", exp),
	}})
	before := list(t, b)
	b2 := openIn(t, ns, Config{})
	if d := cmp.Diff(before, list(t, b2), entriesCmp); d != "" {
		t.Errorf("entries after a second Open (-before +after):\n%s", d)
	}
	if err := b2.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	again := stripElements(nft(t, ns, "list", "table", "inet", "moat"))
	if d := cmp.Diff(string(want), again); d != "" {
		t.Errorf("ruleset after second Open and Ensure (-golden +got):\n%s", d)
	}
}

var elementsLine = regexp.MustCompile(`(?m)^\s*elements = \{[^}]*\}\n`)

func stripElements(s string) string { return elementsLine.ReplaceAllString(s, "") }

// pair is an attacker namespace and moat's namespace joined by a veth, with
// a UDP sink in moat's namespace counting datagrams per source.
type pair struct {
	a, m *testutil.NetNS

	mu     sync.Mutex
	counts map[netip.Addr]int
}

const (
	mAddr4 = "198.18.0.1"
	mAddr6 = "2001:db8::1"
	port   = 9
)

func newPair(t *testing.T) *pair {
	p := &pair{a: testutil.NewNetNS(t), m: testutil.NewNetNS(t), counts: map[netip.Addr]int{}}
	testutil.VethPair(t, p.a, p.m,
		[]string{"198.18.0.2/16", "198.18.0.3/16", "198.18.4.7/16", "198.18.9.9/16", "2001:db8::2/64", "2001:db8::3/64"},
		[]string{mAddr4 + "/16", mAddr6 + "/64"})
	var sink *net.UDPConn
	if err := p.m.Do(func() error {
		var err error
		sink, err = net.ListenUDP("udp", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatalf("listen in moat's namespace: %v", err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.counts[from.Addr().Unmap()]++
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *pair) received(src netip.Addr) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[src]
}

// warm sends until one datagram from src arrives, so neighbour discovery
// is done before losses are counted as drops.
func (p *pair) warm(t *testing.T, src string) {
	t.Helper()
	for range 20 {
		if p.pings(t, src, 1) == 1 {
			return
		}
	}
	t.Fatalf("nothing from %s arrives before any ban", src)
}

// pings sends n datagrams from src in the attacker namespace to moat's
// namespace and reports how many arrived.
func (p *pair) pings(t *testing.T, src string, n int) int {
	t.Helper()
	sa := netip.MustParseAddr(src)
	dst := netip.MustParseAddr(mAddr4)
	if sa.Is6() {
		dst = netip.MustParseAddr(mAddr6)
	}
	before := p.received(sa)
	if err := p.a.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(sa, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte("moat")); err != nil {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatalf("send from %s: %v", src, err)
	}
	// Delivery is synchronous on a veth, but the sink reads on its own.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) && p.received(sa)-before < n {
		time.Sleep(10 * time.Millisecond)
	}
	return p.received(sa) - before
}

func counters(t *testing.T, b *Backend) map[string]Counter {
	t.Helper()
	c, err := b.Counters(context.Background())
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	return c
}

func TestDrop(t *testing.T) {
	p := newPair(t)
	b := openIn(t, p.m, Config{})
	hour := time.Now().Add(time.Hour)
	const n = 4

	// Warm neighbour caches so that later losses are drops, not ARP/ND.
	for _, src := range []string{"198.18.0.2", "198.18.0.3", "198.18.4.7", "198.18.9.9", "2001:db8::2", "2001:db8::3"} {
		p.warm(t, src)
	}

	t.Run("singles", func(t *testing.T) {
		apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.2/32", hour), entry("2001:db8::2/128", time.Time{})}})
		c0 := counters(t, b)
		for src, want := range map[string]int{"198.18.0.2": 0, "198.18.0.3": n, "2001:db8::2": 0, "2001:db8::3": n} {
			if got := p.pings(t, src, n); got != want {
				t.Errorf("from %s: %d/%d replies, want %d", src, got, n, want)
			}
		}
		c1 := counters(t, b)
		if d := c1[setBan4].Packets - c0[setBan4].Packets; d != n {
			t.Errorf("ban4 counter grew by %d, want %d", d, n)
		}
		if d := c1[setBan6].Packets - c0[setBan6].Packets; d != n {
			t.Errorf("ban6 counter grew by %d, want %d", d, n)
		}
		if c1[setBan4].Bytes <= c0[setBan4].Bytes {
			t.Errorf("ban4 byte counter did not grow: %v -> %v", c0[setBan4], c1[setBan4])
		}
		apply(t, b, enforce.Diff{Delete: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("2001:db8::2/128")}})
		for _, src := range []string{"198.18.0.2", "2001:db8::2"} {
			if got := p.pings(t, src, n); got != n {
				t.Errorf("after unban, from %s: %d/%d replies", src, got, n)
			}
		}
	})

	t.Run("cidr", func(t *testing.T) {
		apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.4.0/24", hour), entry("2001:db8::/120", hour)}})
		c0 := counters(t, b)
		for src, want := range map[string]int{"198.18.4.7": 0, "198.18.9.9": n, "2001:db8::2": 0, "2001:db8::3": 0} {
			if got := p.pings(t, src, n); got != want {
				t.Errorf("from %s: %d/%d replies, want %d", src, got, n, want)
			}
		}
		c1 := counters(t, b)
		if d := c1[setBan4Range].Packets - c0[setBan4Range].Packets; d != n {
			t.Errorf("ban4_range counter grew by %d, want %d", d, n)
		}
		if d := c1[setBan6Range].Packets - c0[setBan6Range].Packets; d != 2*n {
			t.Errorf("ban6_range counter grew by %d, want %d", d, 2*n)
		}
		apply(t, b, enforce.Diff{Delete: []netip.Prefix{netip.MustParsePrefix("198.18.4.0/24"), netip.MustParsePrefix("2001:db8::/120")}})
		if got := p.pings(t, "198.18.4.7", n); got != n {
			t.Errorf("after unban, %d/%d replies", got, n)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		exp := time.Now().Add(2 * time.Second)
		apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.3/32", exp), entry("198.18.9.0/24", exp)}})
		for _, src := range []string{"198.18.0.3", "198.18.9.9"} {
			if got := p.pings(t, src, 2); got != 0 {
				t.Errorf("before expiry, from %s: %d/2 replies", src, got)
			}
		}
		time.Sleep(time.Until(exp) + 300*time.Millisecond)
		for _, src := range []string{"198.18.0.3", "198.18.9.9"} {
			if got := p.pings(t, src, 2); got != 2 {
				t.Errorf("after expiry, from %s: %d/2 replies", src, got)
			}
		}
	})

	t.Run("overlap", func(t *testing.T) {
		h2 := time.Now().Add(2 * time.Hour)
		wide, narrow := netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.18.4.0/24")
		// The /16 also covers moat's own address; only sources matter.
		apply(t, b, enforce.Diff{Set: []enforce.Entry{{Prefix: wide, Expiry: hour}, {Prefix: narrow, Expiry: h2}}})
		want := []enforce.Entry{{Prefix: wide, Expiry: hour}, {Prefix: narrow, Expiry: h2}}
		if d := cmp.Diff(want, list(t, b), entriesCmp); d != "" {
			t.Errorf("List (-want +got):\n%s", d)
		}
		segs, err := b.readSegments(b.ranged[fam4])
		if err != nil {
			t.Fatal(err)
		}
		wantSegs := []segment{
			seg("198.18.0.0", "198.18.3.255", hour), seg("198.18.4.0", "198.18.4.255", h2), seg("198.18.5.0", "198.18.255.255", hour),
		}
		if d := cmp.Diff(wantSegs, segs, segApprox); d != "" {
			t.Errorf("kernel segments (-want +got):\n%s", d)
		}
		for _, src := range []string{"198.18.4.7", "198.18.9.9"} {
			if got := p.pings(t, src, 2); got != 0 {
				t.Errorf("overlap, from %s: %d/2 replies", src, got)
			}
		}
		// Removing the /16 keeps the /24.
		apply(t, b, enforce.Diff{Delete: []netip.Prefix{wide}})
		if got := p.pings(t, "198.18.4.7", 2); got != 0 {
			t.Errorf("after removing the /16, 198.18.4.7: %d/2 replies", got)
		}
		if got := p.pings(t, "198.18.9.9", 2); got != 2 {
			t.Errorf("after removing the /16, 198.18.9.9: %d/2 replies", got)
		}
		// Removing the /24 under a /16 keeps the /16 over it.
		apply(t, b, enforce.Diff{Set: []enforce.Entry{{Prefix: wide, Expiry: hour}}})
		apply(t, b, enforce.Diff{Delete: []netip.Prefix{narrow}})
		if got := p.pings(t, "198.18.4.7", 2); got != 0 {
			t.Errorf("after removing the /24, 198.18.4.7: %d/2 replies", got)
		}
		if d := cmp.Diff([]enforce.Entry{{Prefix: wide, Expiry: hour}}, list(t, b), entriesCmp); d != "" {
			t.Errorf("List (-want +got):\n%s", d)
		}
		segs, err = b.readSegments(b.ranged[fam4])
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]segment{seg("198.18.0.0", "198.18.255.255", hour)}, segs, segApprox); d != "" {
			t.Errorf("kernel segments (-want +got):\n%s", d)
		}
	})
}

var segApprox = cmp.Comparer(func(a, b segment) bool {
	return a.start == b.start && a.end == b.end && sameSegmentExpiry(a.expiry, b.expiry, expiryTolerance)
})

func elementTimeout(t *testing.T, b *Backend, s *nftables.Set, key netip.Addr) (timeout, expires time.Duration) {
	t.Helper()
	els, err := b.conn.GetSetElements(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range els {
		if a, _ := netip.AddrFromSlice(e.Key); a == key {
			return e.Timeout, e.Expires
		}
	}
	t.Fatalf("%s not in set %s", key, s.Name)
	return 0, 0
}

func TestRebanAndRoundTrip(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	a4, a6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")

	for _, tc := range []struct {
		name string
		in   time.Duration
	}{{"first ban", 10 * time.Second}, {"extend", time.Hour}, {"shorten", time.Minute}, {"extend again", 3 * time.Hour}} {
		exp := time.Now().Add(tc.in)
		apply(t, b, enforce.Diff{Set: []enforce.Entry{{Prefix: netip.PrefixFrom(a4, 32), Expiry: exp}, {Prefix: netip.PrefixFrom(a6, 128), Expiry: exp}}})
		for _, k := range []struct {
			s *nftables.Set
			a netip.Addr
		}{{b.single[fam4], a4}, {b.single[fam6], a6}} {
			to, left := elementTimeout(t, b, k.s, k.a)
			if d := to - tc.in; d < -time.Second || d > time.Second {
				t.Errorf("%s %s: kernel timeout %v, want %v", tc.name, k.a, to, tc.in)
			}
			if d := left - tc.in; d < -2*time.Second || d > time.Second {
				t.Errorf("%s %s: kernel time left %v, want about %v", tc.name, k.a, left, tc.in)
			}
		}
	}

	// Round trip: what Apply set is what List reads back.
	now := time.Now()
	want := []enforce.Entry{
		entry("198.18.0.2/32", now.Add(3*time.Hour)),
		entry("198.18.0.5/32", time.Time{}),
		entry("198.18.1.0/24", now.Add(time.Hour)),
		entry("198.18.2.0/23", time.Time{}),
		entry("198.18.8.0/21", now.Add(time.Hour)),
		entry("198.18.8.0/24", now.Add(2*time.Hour)),
		entry("2001:db8::2/128", now.Add(3*time.Hour)),
		entry("2001:db8::9/128", now.Add(time.Minute)),
		entry("2001:db8:1::/48", now.Add(time.Hour)),
		entry("2001:db8:2::/64", time.Time{}),
	}
	apply(t, b, enforce.Diff{Set: want})
	if d := cmp.Diff(want, list(t, b), entriesCmp); d != "" {
		t.Errorf("List after Apply (-want +got):\n%s", d)
	}
	// A fresh backend on the same table reads the same.
	b2 := openIn(t, ns, Config{})
	got2 := list(t, b2)
	// The adopting backend cannot know the overlap 198.18.8.0/21 + /24 was
	// two prefixes; it reports the kernel's segments as CIDRs.
	var cidrs []string
	for _, e := range got2 {
		cidrs = append(cidrs, e.Prefix.String())
	}
	for _, p := range []string{"198.18.0.2/32", "198.18.0.5/32", "198.18.1.0/24", "198.18.2.0/23", "198.18.8.0/24", "198.18.9.0/24", "198.18.10.0/23", "198.18.12.0/22", "2001:db8:1::/48", "2001:db8:2::/64"} {
		if !slices.Contains(cidrs, p) {
			t.Errorf("adopting backend's List lacks %s: %v", p, cidrs)
		}
	}
}

func TestDrift(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	hour := time.Now().Add(time.Hour)
	want := []enforce.Entry{
		entry("198.18.0.2/32", hour), entry("198.18.0.3/32", time.Time{}), entry("198.18.4.0/24", hour),
		entry("2001:db8::2/128", hour), entry("2001:db8:1::/48", hour),
	}
	apply(t, b, enforce.Diff{Set: want})

	// repair plays the reconciler's verify pass: Ensure, List, Apply the gap.
	repair := func(t *testing.T, gap bool) {
		t.Helper()
		if err := b.Ensure(context.Background()); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		held := list(t, b)
		var missing []enforce.Entry
		for _, e := range want {
			if !slices.ContainsFunc(held, func(h enforce.Entry) bool { return h.Prefix == e.Prefix }) {
				missing = append(missing, e)
			}
		}
		if gap != (len(missing) > 0) {
			t.Fatalf("List after drift: missing %v, want a gap: %v", missing, gap)
		}
		apply(t, b, enforce.Diff{Set: missing})
		if d := cmp.Diff(want, list(t, b), entriesCmp); d != "" {
			t.Errorf("List after repair (-want +got):\n%s", d)
		}
	}

	t.Run("flush table", func(t *testing.T) {
		// flush table removes the rules; the elements stay.
		nft(t, ns, "flush", "table", "inet", "moat")
		if c := counters(t, b); len(c) != 0 {
			t.Fatalf("rules survived flush table: %v", c)
		}
		repair(t, false)
		golden, err := os.ReadFile(filepath.Join("testdata", "ruleset.nft"))
		if err != nil {
			t.Fatal(err)
		}
		got := stripElements(nft(t, ns, "list", "table", "inet", "moat"))
		if d := cmp.Diff(string(golden), regexp.MustCompile(`packets \d+ bytes \d+`).ReplaceAllString(got, "packets 0 bytes 0")); d != "" {
			t.Errorf("ruleset after repair (-golden +got):\n%s", d)
		}
	})
	t.Run("delete element", func(t *testing.T) {
		nft(t, ns, "delete", "element", "inet", "moat", "ban4", "{ 198.18.0.2 }")
		repair(t, true)
	})
	t.Run("delete range element", func(t *testing.T) {
		nft(t, ns, "delete", "element", "inet", "moat", "ban4_range", "{ 198.18.4.0/24 }")
		repair(t, true)
	})
	t.Run("delete set and chain", func(t *testing.T) {
		nft(t, ns, "delete", "chain", "inet", "moat", "moat-prerouting")
		nft(t, ns, "delete", "set", "inet", "moat", "ban6")
		repair(t, true)
		if c := counters(t, b); len(c) != 4 {
			t.Errorf("counters of %d rules after repair, want 4: %v", len(c), c)
		}
	})
	t.Run("delete table", func(t *testing.T) {
		nft(t, ns, "delete", "table", "inet", "moat")
		repair(t, true)
	})
}

func TestForeignTableUntouched(t *testing.T) {
	ns := testutil.NewNetNS(t)
	script := `table inet other {
	set keep {
		type ipv4_addr
		flags timeout
		elements = { 198.18.1.1, 198.18.1.2 timeout 1h }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @keep counter drop
		ip saddr 198.18.3.3 counter accept
	}
}
`
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	// The element with a timeout counts down; compare without its expiry.
	norm := func(s string) string { return regexp.MustCompile(` expires [0-9hms]+`).ReplaceAllString(s, "") }
	before := norm(nft(t, ns, "list", "table", "inet", "other"))

	cfg := Config{NetNS: nsFD(t, ns)}
	b, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.1.1/32", time.Time{}), entry("198.18.0.0/16", time.Now().Add(time.Hour))}})
	if err := b.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := norm(nft(t, ns, "list", "table", "inet", "other")); got != before {
		t.Errorf("foreign table changed by Open/Apply:\n%s", cmp.Diff(before, got))
	}
	if err := Cleanup(context.Background(), cfg); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := Cleanup(context.Background(), cfg); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if got := norm(nft(t, ns, "list", "table", "inet", "other")); got != before {
		t.Errorf("foreign table changed by Cleanup:\n%s", cmp.Diff(before, got))
	}
	if out, err := ns.Command("nft", "list", "table", "inet", "moat").CombinedOutput(); err == nil {
		t.Errorf("table inet moat still there after Cleanup:\n%s", out)
	}
}

// addrs4 returns n distinct addresses in 198.18.0.0/15.
func addrs4(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		v := uint32(198)<<24 | uint32(18)<<16 + uint32(i)
		out[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return out
}

func TestLargeLoad(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	const n = 100_000
	exp := time.Now().Add(time.Hour)
	var d enforce.Diff
	for _, a := range addrs4(n) {
		d.Set = append(d.Set, enforce.Entry{Prefix: netip.PrefixFrom(a, 32), Expiry: exp})
	}
	start := time.Now()
	apply(t, b, d)
	t.Logf("applied %d elements in %v", n, time.Since(start))
	start = time.Now()
	got := list(t, b)
	listed := time.Since(start)
	t.Logf("listed %d elements in %v", len(got), listed)
	if len(got) != n {
		t.Fatalf("List returned %d entries, want %d", len(got), n)
	}
	// Exact expiries even though the dump takes a while: each message is
	// stamped when it arrives.
	if d := cmp.Diff(d.Set, got, entriesCmp); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	// Re-ban them all (delete + add of known elements) in one Apply.
	for i := range d.Set {
		d.Set[i].Expiry = exp.Add(time.Hour)
	}
	apply(t, b, d)
	if got := list(t, b); len(got) != n || !sameSegmentExpiry(got[n-1].Expiry, exp.Add(time.Hour), expiryTolerance) {
		t.Errorf("after re-ban: %d entries, last %v", len(got), got[len(got)-1])
	}
}

func TestNetdevIngress(t *testing.T) {
	p := newPair(t)
	ifc := strings.TrimSpace(p.m.Run(t, "sh", "-c", "ls /sys/class/net | grep -v '^lo$'"))
	b := openIn(t, p.m, Config{Interfaces: []string{ifc}})
	for _, src := range []string{"198.18.0.2", "198.18.0.3", "2001:db8::3"} {
		p.warm(t, src)
	}
	apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.2/32", time.Now().Add(time.Hour)), entry("2001:db8::/120", time.Time{})}})
	for src, want := range map[string]int{"198.18.0.2": 0, "198.18.0.3": 2, "2001:db8::3": 0} {
		if got := p.pings(t, src, 2); got != want {
			t.Errorf("from %s: %d/2 replies, want %d", src, got, want)
		}
	}
	out := nft(t, p.m, "list", "table", "netdev", "moat")
	if !strings.Contains(out, "hook ingress device \""+ifc+"\"") {
		t.Errorf("no ingress chain on %s:\n%s", ifc, out)
	}
	cfg := Config{Interfaces: []string{ifc}, NetNS: nsFD(t, p.m)}
	if err := Cleanup(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", p.m.Name, "nft", "list", "tables").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("tables left after Cleanup: %s %v", out, err)
	}
}

func TestHookChange(t *testing.T) {
	ns := testutil.NewNetNS(t)
	b := openIn(t, ns, Config{})
	apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.2/32", time.Time{})}})
	b2 := openIn(t, ns, Config{Hook: "input"})
	out := nft(t, ns, "list", "table", "inet", "moat")
	if !strings.Contains(out, "chain moat-input {") || !strings.Contains(out, "hook input priority raw") {
		t.Errorf("no input chain after switching hooks:\n%s", out)
	}
	if strings.Contains(out, "moat-prerouting") {
		t.Errorf("prerouting chain left after switching hooks:\n%s", out)
	}
	if got := list(t, b2); len(got) != 1 || got[0].Prefix != netip.MustParsePrefix("198.18.0.2/32") {
		t.Errorf("elements after switching hooks: %v", got)
	}
	if _, err := Open(context.Background(), Config{Hook: "forward"}); err == nil {
		t.Error("Open accepted hook forward")
	}
}
