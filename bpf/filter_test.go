package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/internal/unix"
)

// TestKeysAdd checks that each prefix lands in the map that holds it, in
// the canonical form (model.Canonical's own test covers the edge cases).
func TestKeysAdd(t *testing.T) {
	for _, tc := range []struct {
		in    string
		which int
		bits  int
	}{
		{"198.18.0.1/32", mapSingle4, 32},
		{"198.18.3.4/16", mapRange4, 16},
		{"2001:db8::1/128", mapSingle6, 128},
		{"2001:db8:1:2::5/48", mapRange6, 48},
		{"::ffff:198.18.0.1/128", mapSingle4, 32},
		{"::ffff:198.18.7.1/120", mapRange4, 24},
		{"::ffff:0:0/80", mapRange6, 80}, // shorter than the mapped block: stays IPv6
	} {
		var k keys
		which, err := k.add(netip.MustParsePrefix(tc.in))
		if err != nil || which != tc.which {
			t.Errorf("add(%s) = %d, %v; want map %d", tc.in, which, err, tc.which)
			continue
		}
		var bits int
		switch which {
		case mapRange4:
			bits = int(k.range4[0].Prefixlen)
		case mapRange6:
			bits = int(k.range6[0].Prefixlen)
		default:
			bits = netip.MustParsePrefix(tc.in).Addr().Unmap().BitLen()
		}
		if bits != tc.bits {
			t.Errorf("add(%s): key prefix length %d, want %d", tc.in, bits, tc.bits)
		}
	}
	var k keys
	if _, err := k.add(netip.Prefix{}); err == nil {
		t.Error("add accepted the zero prefix")
	}
}

// frame builds an Ethernet frame carrying an IP header from src, behind the
// given VLAN ethertypes (0x8100 or 0x88a8), padded to 64 bytes.
func frame(src string, vlans ...uint16) []byte {
	b := make([]byte, 12, 128) // destination and source MAC
	for i, tpid := range vlans {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI
	}
	a := netip.MustParseAddr(src)
	if a.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], 20+8)
		copy(ip[12:16], a.AsSlice())
		copy(ip[16:20], []byte{198, 18, 0, 1})
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, 17, 64
		binary.BigEndian.PutUint16(ip[4:], 8)
		copy(ip[8:24], a.AsSlice())
		copy(ip[24:40], netip.MustParseAddr("2001:db8::1").AsSlice())
		b = append(b, ip...)
	}
	for len(b) < 64 {
		b = append(b, 0)
	}
	return b
}

func loadTest(t testing.TB, opts Options) *Filter {
	t.Helper()
	testutil.RequireRoot(t)
	if opts.PinDir == "" {
		opts.PinDir = "/sys/fs/bpf/" + testutil.RandName("moat-test-", 10)
	}
	f, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := Cleanup(opts.PinDir); err != nil {
			t.Error(err)
		}
	})
	return f
}

func bootNow(t testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestVerdicts runs the program on crafted frames against real maps: the
// parsing (VLAN tags, truncation), both lookups per family and expiry.
func TestVerdicts(t *testing.T) {
	f := loadTest(t, Options{MaxSingles: 64, MaxRanges: 16})
	now := bootNow(t)
	err := f.Set([]Ban{
		{Prefix: netip.MustParsePrefix("198.18.0.10/32")},
		{Prefix: netip.MustParsePrefix("198.18.0.11/32"), ExpiresNs: now + uint64(time.Hour)},
		{Prefix: netip.MustParsePrefix("198.18.0.12/32"), ExpiresNs: now - uint64(time.Second)},
		{Prefix: netip.MustParsePrefix("198.18.4.0/22")},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128")},
		{Prefix: netip.MustParsePrefix("2001:db8::12/128"), ExpiresNs: now - 1},
		{Prefix: netip.MustParsePrefix("2001:db8:7::/48"), ExpiresNs: now + uint64(time.Hour)},
		{Prefix: netip.MustParsePrefix("2001:db8:8::/48"), ExpiresNs: now - 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	arp := frame("198.18.0.10")
	arp[12], arp[13] = 0x08, 0x06
	for _, tc := range []struct {
		name    string
		frame   []byte
		drop    bool
		expired bool
	}{
		{"v4 single", frame("198.18.0.10"), true, false},
		{"v4 single with future expiry", frame("198.18.0.11"), true, false},
		{"v4 single expired", frame("198.18.0.12"), false, true},
		{"v4 neighbour", frame("198.18.0.13"), false, false},
		{"v4 range low edge", frame("198.18.4.0"), true, false},
		{"v4 range high edge", frame("198.18.7.255"), true, false},
		{"v4 past range", frame("198.18.8.0"), false, false},
		{"v4 802.1Q", frame("198.18.0.10", 0x8100), true, false},
		{"v4 QinQ", frame("198.18.5.5", 0x88a8, 0x8100), true, false},
		{"v4 three tags are not parsed", frame("198.18.0.10", 0x88a8, 0x8100, 0x8100), false, false},
		{"v4 truncated header", frame("198.18.0.10")[:14+19], false, false},
		{"v4 in arp ethertype", arp, false, false},
		{"v6 single", frame("2001:db8::10"), true, false},
		{"v6 single expired", frame("2001:db8::12"), false, true},
		{"v6 neighbour", frame("2001:db8::11"), false, false},
		{"v6 range", frame("2001:db8:7:ffff::1"), true, false},
		{"v6 range expired", frame("2001:db8:8::1"), false, true},
		{"v6 802.1Q", frame("2001:db8::10", 0x8100), true, false},
		{"v6 truncated header", frame("2001:db8::10")[:14+39], false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := f.Counters()
			if err != nil {
				t.Fatal(err)
			}
			drop, _, err := f.TestRun(tc.frame, 1)
			if err != nil {
				t.Fatal(err)
			}
			after, err := f.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if drop != tc.drop {
				t.Errorf("drop = %v, want %v", drop, tc.drop)
			}
			d := Counters{
				DroppedPackets: after.DroppedPackets - before.DroppedPackets,
				DroppedBytes:   after.DroppedBytes - before.DroppedBytes,
				PassedPackets:  after.PassedPackets - before.PassedPackets,
				ExpiredHits:    after.ExpiredHits - before.ExpiredHits,
			}
			want := Counters{PassedPackets: 1}
			if tc.drop {
				want = Counters{DroppedPackets: 1, DroppedBytes: uint64(len(tc.frame))}
			}
			if tc.expired {
				want.ExpiredHits = 1
			}
			if d != want {
				t.Errorf("counter deltas %+v, want %+v", d, want)
			}
		})
	}
}

func TestSetDeleteEntries(t *testing.T) {
	f := loadTest(t, Options{MaxSingles: 8, MaxRanges: 4})
	bans := []Ban{
		{Prefix: netip.MustParsePrefix("198.18.0.1/32"), ExpiresNs: 5},
		{Prefix: netip.MustParsePrefix("2001:db8::1/128")},
		{Prefix: netip.MustParsePrefix("198.18.1.0/24"), ExpiresNs: 7},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64")},
	}
	if err := f.Set(bans); err != nil {
		t.Fatal(err)
	}
	got, err := f.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(bans) {
		t.Errorf("Entries = %v, want %v", got, bans)
	}
	// Absent keys between present ones must not stop the batch.
	n, err := f.Delete([]netip.Prefix{
		netip.MustParsePrefix("198.18.9.9/32"), netip.MustParsePrefix("198.18.0.1/32"),
		netip.MustParsePrefix("198.18.9.8/32"), netip.MustParsePrefix("198.18.1.0/24"),
		netip.MustParsePrefix("2001:db8:2::/64"), netip.MustParsePrefix("2001:db8::1/128"),
	})
	if err != nil || n != 3 {
		t.Fatalf("Delete = %d, %v; want 3 deleted", n, err)
	}
	if got, err = f.Entries(); err != nil || len(got) != 1 || got[0] != bans[3] {
		t.Errorf("after delete: %v, %v; want only %v", got, err, bans[3])
	}
	// A full map reports an error rather than dropping bans silently.
	var many []Ban
	for i := range 9 {
		many = append(many, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(i)}), 32)})
	}
	if err := f.Set(many); !errors.Is(err, ErrMapFull) {
		t.Errorf("Set of 9 singles into a map of 8: %v, want ErrMapFull", err)
	}
	var ranges []Ban
	for i := range 5 {
		ranges = append(ranges, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 9, byte(i)}), 48)})
	}
	if err := f.Set(ranges); !errors.Is(err, ErrMapFull) {
		t.Errorf("Set of 5 ranges into a trie of 4 holding 1: %v, want ErrMapFull", err)
	}
}

func TestCleanupLeavesForeignFiles(t *testing.T) {
	testutil.RequireRoot(t)
	dir := "/sys/fs/bpf/" + testutil.RandName("moat-test-", 10)
	f, err := Load(Options{PinDir: dir, MaxSingles: 8, MaxRanges: 8})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	foreign := dir + "/other"
	if err := os.Mkdir(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "other" {
		t.Errorf("after Cleanup the pin dir holds %v (err %v), want only the foreign entry", ents, err)
	}
	os.Remove(foreign)
	if err := Cleanup(dir); err != nil || !errors.Is(statErr(dir), os.ErrNotExist) {
		t.Errorf("second Cleanup: %v; dir stat: %v", err, statErr(dir))
	}
}

func statErr(p string) error { _, err := os.Stat(p); return err }

// BenchmarkTestRun measures the program alone with BPF_PROG_TEST_RUN, with
// 1M IPv4 singles and 10k ranges loaded: no receive path, no per-packet
// clock reads.
func BenchmarkTestRun(b *testing.B) {
	f := loadTest(b, Options{})
	var bans []Ban
	for i := range 1_000_000 {
		bans = append(bans, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{240, byte(i >> 16), byte(i >> 8), byte(i)}), 32)})
	}
	for i := range 10_000 {
		bans = append(bans, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{250, byte(i >> 8), byte(i), 0}), 24)})
	}
	bans = append(bans, Ban{Prefix: netip.MustParsePrefix("198.18.0.10/32")},
		Ban{Prefix: netip.MustParsePrefix("2001:db8::10/128")})
	if err := f.Set(bans); err != nil {
		b.Fatal(err)
	}
	b.Run("floor", func(b *testing.B) {
		// A program that only returns XDP_PASS: the test-run harness cost
		// included in every figure below.
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
		if err != nil {
			b.Fatal(err)
		}
		defer prog.Close()
		_, per, err := prog.Benchmark(frame("198.18.0.11"), b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt-prog")
	})
	for _, bc := range []struct {
		name string
		src  string
		drop bool
	}{
		{"v4-pass", "198.18.0.11", false},
		{"v4-drop-single", "198.18.0.10", true},
		{"v4-drop-range", "250.0.7.1", true},
		{"v6-pass", "2001:db8::11", false},
		{"v6-drop-single", "2001:db8::10", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			drop, per, err := f.TestRun(frame(bc.src), b.N)
			if err != nil {
				b.Fatal(err)
			}
			if drop != bc.drop {
				b.Fatalf("drop = %v, want %v", drop, bc.drop)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt-prog")
		})
	}
}

// BenchmarkRunTimeFloor reports what BPF_STATS_RUN_TIME charges a program
// that only returns XDP_PASS, on packets through a veth: the clock-read
// overhead included in every ns/pkt-prog figure measured that way.
func BenchmarkRunTimeFloor(b *testing.B) {
	a, ns := testutil.NewNetNS(b), testutil.NewNetNS(b)
	va, vb := testutil.VethPair(b, a, ns, []string{"198.18.0.10/24"}, []string{"198.18.0.1/24"})
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	stats, err := EnableRunTimeStats()
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	var l link.Link
	err = ns.Do(func() error {
		iface, err := netInterface(vb.Name)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	// Not pinned: closing the link (or the garbage collector finding it
	// unreferenced) detaches the program.
	defer l.Close()
	waitUp(b, a, va.Name)
	waitUp(b, ns, vb.Name)
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	pkt := fmt.Sprintf("{ eth(da=%s, sa=%s), ipv4(sa=198.18.0.10, da=198.18.0.1), udp(sp=4000, dp=9), fill(0x00, 18) }", vb.MAC, va.MAC)
	b.ResetTimer()
	out, err := exec.Command("ip", "netns", "exec", a.Name, "trafgen", "--dev", va.Name,
		"--no-sock-mem", "--notouch-irq", "-P", "1", "-C", "-n", fmt.Sprint(max(b.N, 10_000)), pkt).CombinedOutput()
	if err != nil {
		b.Fatalf("trafgen: %v: %s", err, out)
	}
	b.StopTimer()
	time.Sleep(20 * time.Millisecond)
	after, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatalf("the program did not run: %s", out)
	}
	b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "ns/pkt-prog")
}

func netInterface(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifc.Index, nil
}

// waitUp waits until a fresh veth end has carrier; trafgen fails on a link
// that is still coming up.
func waitUp(tb testing.TB, ns *testutil.NetNS, dev string) {
	tb.Helper()
	for range 200 {
		if out, err := ns.Command("cat", "/sys/class/net/"+dev+"/operstate").Output(); err == nil && string(out) == "up\n" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("%s did not come up", dev)
}
