package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/testutil"
)

func single(s string, expiry time.Time) enforce.Entry {
	a := netip.MustParseAddr(s)
	return enforce.Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), Expiry: expiry}
}

func rng(s string, expiry time.Time) enforce.Entry {
	return enforce.Entry{Prefix: netip.MustParsePrefix(s), Expiry: expiry}
}

func counters(t *testing.T, be *Backend) Counters {
	t.Helper()
	c, err := be.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sendAndCheck sends n packets from src and checks that exactly n were
// dropped in XDP (drop) or exactly n reached the sink and none was dropped.
func sendAndCheck(t *testing.T, l *lab, be *Backend, src string, n int, drop bool) {
	t.Helper()
	before := counters(t, be)
	recv := l.sink.count(src)
	l.send(t, src, n)
	err := waitFor(func() (bool, error) {
		c, err := be.Counters()
		if drop {
			return c.DroppedPackets-before.DroppedPackets >= uint64(n), err
		}
		return l.sink.count(src)-recv >= n, err
	})
	if err != nil {
		t.Fatalf("%s: waiting for %d packets (drop=%v): %v", src, n, drop, err)
	}
	time.Sleep(50 * time.Millisecond) // let stragglers show up in the counters
	after := counters(t, be)
	gotDrop := after.DroppedPackets - before.DroppedPackets
	gotRecv := l.sink.count(src) - recv
	want := uint64(0)
	if drop {
		want = uint64(n)
	}
	if gotDrop != want {
		t.Errorf("%s: dropped %d packets, want %d", src, gotDrop, want)
	}
	if drop && gotRecv != 0 {
		t.Errorf("%s: %d packets reached the receiver despite the ban", src, gotRecv)
	}
	if drop && after.DroppedBytes-before.DroppedBytes < uint64(n)*60 {
		t.Errorf("%s: dropped bytes grew by %d for %d packets", src, after.DroppedBytes-before.DroppedBytes, n)
	}
}

func TestDropThroughVeth(t *testing.T) {
	testutil.RequireRoot(t)
	srcs := []string{
		"198.18.0.10", "198.18.0.11", "198.18.0.12", // banned, neighbour, banned with expiry
		"198.18.1.5", "198.18.1.255", "198.18.2.1", // in the /24 range, its edge, outside
		"2001:db8::10", "2001:db8::11", "2001:db8::12",
		"2001:db8:1::5", "2001:db8:1:ffff::9", "2001:db8:2::1",
	}
	l := newLab(t, srcs...)
	be := l.open(t, testPinDir(t))
	defer be.Close()
	if m := be.Modes()[l.vb.Name]; m != "native" {
		t.Errorf("mode on veth = %q, want native", m)
	}

	ctx := context.Background()
	soon := time.Now().Add(2 * time.Second)
	err := be.Apply(ctx, enforce.Diff{Set: []enforce.Entry{
		single("198.18.0.10", time.Time{}),
		single("2001:db8::10", time.Now().Add(time.Hour)),
		single("198.18.0.12", soon),
		single("2001:db8::12", soon),
		rng("198.18.1.0/24", time.Time{}),
		rng("2001:db8:1::/48", time.Now().Add(time.Hour)),
	}})
	if err != nil {
		t.Fatal(err)
	}

	const n = 100
	for _, tc := range []struct {
		src  string
		drop bool
	}{
		{"198.18.0.12", true},
		{"2001:db8::12", true},
		{"198.18.0.10", true},
		{"198.18.0.11", false},
		{"2001:db8::10", true},
		{"2001:db8::11", false},
		{"198.18.1.5", true},
		{"198.18.1.255", true},
		{"198.18.2.1", false},
		{"2001:db8:1::5", true},
		{"2001:db8:1:ffff::9", true},
		{"2001:db8:2::1", false},
	} {
		sendAndCheck(t, l, be, tc.src, n, tc.drop)
		if strings.HasSuffix(tc.src, "::12") && time.Now().After(soon) {
			t.Fatal("the expiring bans ran out before they were checked; the machine is too slow for this test")
		}
	}

	// Let the two bans expire without touching the maps: the program itself
	// must stop dropping and count the hits as expired.
	time.Sleep(time.Until(soon) + 200*time.Millisecond)
	for _, src := range []string{"198.18.0.12", "2001:db8::12"} {
		before := counters(t, be)
		sendAndCheck(t, l, be, src, n, false)
		if got := counters(t, be).ExpiredHits - before.ExpiredHits; got != n {
			t.Errorf("%s after expiry: %d expired hits, want %d", src, got, n)
		}
	}
	list, err := be.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(e enforce.Entry) bool { return e.Prefix == single("198.18.0.12", soon).Prefix }) {
		t.Error("expired entry was removed from the map; the test meant to prove the program ignores it on its own")
	}
}

// entries returns n distinct bans (n <= 120k): singles in 198.18.128.0/17,
// 198.19.0.0/16 and
// 2001:db8:100::/64, and a few ranges, some expiring.
func entries(n int) []enforce.Entry {
	out := make([]enforce.Entry, 0, n)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	v4 := uint32(198<<24 | 18<<16 | 128<<8) // 198.18.128.0/17 and 198.19.0.0/16: 98304 addresses
	for i := 0; len(out) < n; i++ {
		var e enforce.Entry
		switch {
		case i%100 == 0:
			e = rng(fmt.Sprintf("2001:db8:%x::/48", 0x200+i/100), exp)
		case i%100 == 1:
			e = rng(fmt.Sprintf("198.18.%d.%d/30", 64+(i/100)/64, ((i/100)%64)*4), time.Time{})
		case i%5 == 0:
			e = single(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 14: byte(i >> 8), 15: byte(i)}).String(), exp)
		default:
			e = single(netip.AddrFrom4([4]byte{byte(v4 >> 24), byte(v4 >> 16), byte(v4 >> 8), byte(v4)}).String(), time.Time{})
			v4++
		}
		out = append(out, e)
	}
	return out
}

func prefixSet(t *testing.T, es []enforce.Entry) map[netip.Prefix]bool {
	t.Helper()
	m := make(map[netip.Prefix]bool, len(es))
	for _, e := range es {
		if m[e.Prefix] {
			t.Fatalf("duplicate entry %v", e.Prefix)
		}
		m[e.Prefix] = true
	}
	return m
}

func TestRestartKeepsBans(t *testing.T) {
	testutil.RequireRoot(t)
	const banned, neighbour = "198.18.0.10", "198.18.0.11"
	l := newLab(t, banned, neighbour)
	pinDir := testPinDir(t)
	ctx := context.Background()

	be := l.open(t, pinDir)
	want := append(entries(100_000), single(banned, time.Time{}))
	if err := be.Apply(ctx, enforce.Diff{Set: want}); err != nil {
		t.Fatal(err)
	}
	ids, err := be.f.MapIDs()
	if err != nil {
		t.Fatal(err)
	}
	before := counters(t, be)
	if err := be.Close(); err != nil { // the daemon is gone; nothing detached
		t.Fatal(err)
	}

	// No process holds the program now: only the pins keep it attached.
	const n = 100
	l.send(t, neighbour, n)
	if err := waitFor(func() (bool, error) { return l.sink.count(neighbour) == n, nil }); err != nil {
		t.Fatalf("unbanned neighbour while no daemon runs: got %d of %d packets: %v", l.sink.count(neighbour), n, err)
	}
	l.send(t, banned, n)
	time.Sleep(100 * time.Millisecond)
	if got := l.sink.count(banned); got != 0 {
		t.Fatalf("banned source got %d packets through while no daemon ran", got)
	}

	be = l.open(t, pinDir)
	defer be.Close()
	if !be.f.Adopted() {
		t.Error("second Open did not adopt the pinned maps")
	}
	ids2, err := be.f.MapIDs()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != fmt.Sprint(ids2) {
		t.Errorf("maps were recreated: ids before %v, after %v", ids, ids2)
	}
	if got := counters(t, be).DroppedPackets - before.DroppedPackets; got != n {
		t.Errorf("drops while no daemon ran: %d, want %d", got, n)
	}
	list, err := be.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, wantSet := prefixSet(t, list), prefixSet(t, want)
	if len(got) != len(wantSet) {
		t.Errorf("List after restart: %d entries, want %d", len(got), len(wantSet))
	}
	for p := range wantSet {
		if !got[p] {
			t.Fatalf("List after restart lacks %v", p)
		}
	}

	// The adopted backend still edits the kernel state.
	err = be.Apply(ctx, enforce.Diff{
		Set:    []enforce.Entry{single(neighbour, time.Time{})},
		Delete: []netip.Prefix{single(banned, time.Time{}).Prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	sendAndCheck(t, l, be, banned, n, false)
	sendAndCheck(t, l, be, neighbour, n, true)
	if list, err = be.List(ctx); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) {
		t.Errorf("List after add+remove: %d entries, want %d", len(list), len(want))
	}

	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if out := l.b.Run(t, "ip", "link", "show", "dev", l.vb.Name); !strings.Contains(out, "xdp") {
		t.Fatalf("XDP not attached after Close:\n%s", out)
	}
	if err := Cleanup(pinDir); err != nil {
		t.Fatal(err)
	}
	if out := l.b.Run(t, "ip", "link", "show", "dev", l.vb.Name); strings.Contains(out, "xdp") {
		t.Errorf("XDP still attached after Cleanup:\n%s", out)
	}
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Errorf("pin dir survived Cleanup: %v", err)
	}
	sendAndCheckRecv(t, l, banned, n)
}

// sendAndCheckRecv checks that all n packets from src reach the receiver.
func sendAndCheckRecv(t *testing.T, l *lab, src string, n int) {
	t.Helper()
	recv := l.sink.count(src)
	l.send(t, src, n)
	if err := waitFor(func() (bool, error) { return l.sink.count(src)-recv == n, nil }); err != nil {
		t.Errorf("%s: %d of %d packets arrived: %v", src, l.sink.count(src)-recv, n, err)
	}
}

func TestListRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	be, err := Open(ctx, Config{PinDir: testPinDir(t), MaxSingles: 1024, MaxRanges: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	now := time.Now()
	in := []enforce.Entry{
		single("198.18.0.1", time.Time{}),
		single("198.18.0.2", now.Add(1500*time.Millisecond)),
		single("2001:db8::1", now.Add(90*time.Minute)),
		single("2001:db8::2", time.Time{}),
		rng("198.18.4.0/22", now.Add(24*time.Hour)),
		rng("198.18.0.0/15", time.Time{}),
		rng("2001:db8:5::/48", now.Add(7*24*time.Hour)),
		rng("2001:db8::/32", time.Time{}),
		rng("2001:db8:6::/127", now.Add(time.Second)),
	}
	// Input the store may hand over that the kernel stores normalized.
	odd := []struct{ in, want enforce.Entry }{
		{rng("198.18.9.77/24", time.Time{}), rng("198.18.9.0/24", time.Time{})},
		{rng("::ffff:198.18.10.1/128", time.Time{}), single("198.18.10.1", time.Time{})},
		{rng("::ffff:198.18.11.0/120", time.Time{}), rng("198.18.11.0/24", time.Time{})},
	}
	set := slices.Clone(in)
	want := slices.Clone(in)
	for _, o := range odd {
		set = append(set, o.in)
		want = append(want, o.want)
	}
	expired := single("198.18.0.3", now.Add(-time.Second))
	if err := be.Apply(ctx, enforce.Diff{Set: append(set, expired)}); err != nil {
		t.Fatal(err)
	}
	checkList(t, be, want)

	// Move an expiry, delete one present and one absent prefix, and let an
	// already-expired entry remove a present one.
	want[0].Expiry = now.Add(time.Hour)
	err = be.Apply(ctx, enforce.Diff{
		Set:    []enforce.Entry{want[0], single("2001:db8::2", now.Add(-time.Minute))},
		Delete: []netip.Prefix{want[4].Prefix, netip.MustParsePrefix("198.18.200.0/24"), netip.MustParsePrefix("198.18.200.1/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(e enforce.Entry) bool {
		return e.Prefix == in[3].Prefix || e.Prefix == in[4].Prefix
	})
	checkList(t, be, want)
}

func checkList(t *testing.T, be *Backend, want []enforce.Entry) {
	t.Helper()
	got, err := be.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byPrefix := map[netip.Prefix]time.Time{}
	for _, e := range got {
		if _, dup := byPrefix[e.Prefix]; dup {
			t.Errorf("List: duplicate %v", e.Prefix)
		}
		byPrefix[e.Prefix] = e.Expiry
	}
	if len(got) != len(want) {
		t.Errorf("List: %d entries, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		exp, ok := byPrefix[w.Prefix]
		switch {
		case !ok:
			t.Errorf("List lacks %v", w.Prefix)
		case w.Expiry.IsZero() != exp.IsZero():
			t.Errorf("%v: expiry %v, want %v", w.Prefix, exp, w.Expiry)
		case !w.Expiry.IsZero() && exp.Sub(w.Expiry).Abs() > time.Millisecond:
			t.Errorf("%v: expiry off by %v", w.Prefix, exp.Sub(w.Expiry))
		}
	}
}

func TestAttachModesAndReconfigure(t *testing.T) {
	testutil.RequireRoot(t)
	l := newLab(t)
	const bridge = "moatbr0" // a bridge: no driver-mode XDP
	l.b.Run(t, "ip", "link", "add", bridge, "type", "bridge")
	l.b.Run(t, "ip", "link", "set", bridge, "up")
	pinDir := testPinDir(t)
	ctx := context.Background()
	open := func(ifaces ...string) *Backend {
		t.Helper()
		var be *Backend
		err := l.b.Do(func() error {
			var err error
			be, err = Open(ctx, Config{PinDir: pinDir, Interfaces: ifaces, MaxSingles: 16, MaxRanges: 16})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return be
	}
	xdpState := func(dev string) string {
		out := l.b.Run(t, "ip", "link", "show", "dev", dev)
		switch {
		case strings.Contains(out, "xdpgeneric"):
			return "generic"
		case strings.Contains(out, "xdp"):
			return "native"
		}
		return "none"
	}

	be := open(l.vb.Name, bridge)
	want := map[string]string{l.vb.Name: "native", bridge: "generic"}
	if got := be.Modes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Modes = %v, want %v", got, want)
	}
	for dev, mode := range want {
		if got := xdpState(dev); got != mode {
			t.Errorf("%s: kernel shows %s, want %s", dev, got, mode)
		}
	}
	be.Close()

	// Restart with the bridge no longer configured: it is detached, the
	// veth keeps its (adopted) native attachment.
	be = open(l.vb.Name)
	if got := be.Modes(); fmt.Sprint(got) != fmt.Sprint(map[string]string{l.vb.Name: "native"}) {
		t.Errorf("Modes after reconfigure = %v", got)
	}
	if got := xdpState(bridge); got != "none" {
		t.Errorf("bridge still has XDP (%s) after it was dropped from the config", got)
	}
	if got := xdpState(l.vb.Name); got != "native" {
		t.Errorf("veth lost its attachment across the restart: %s", got)
	}
	be.Close()

	// An interface that does not exist is an error, not a silent skip.
	err := l.b.Do(func() error {
		_, err := Open(ctx, Config{PinDir: pinDir, Interfaces: []string{"nosuchdev0"}})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "nosuchdev0") {
		t.Errorf("Open on a missing interface: %v", err)
	}
}
