package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// l4frame is frame(src) carrying a TCP or UDP header to dport.
func l4frame(src string, proto uint8, dport uint16) []byte {
	b := frame(src)
	l4 := 14 + 20
	if netip.MustParseAddr(src).Is6() {
		b[14+6] = proto
		l4 = 14 + 40
	} else {
		b[14+9] = proto
	}
	binary.BigEndian.PutUint16(b[l4:], 40000)
	binary.BigEndian.PutUint16(b[l4+2:], dport)
	return b
}

func TestOpenPorts(t *testing.T) {
	f := loadTest(t, Options{MaxSingles: 64, MaxRanges: 16, OpenPorts: []OpenPort{{ProtoTCP, 22}, {ProtoUDP, 53}}})
	if err := f.Set([]Ban{
		{Prefix: netip.MustParsePrefix("198.18.0.10/32")},
		{Prefix: netip.MustParsePrefix("198.18.4.0/22")},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128")},
	}); err != nil {
		t.Fatal(err)
	}
	frag := l4frame("198.18.0.10", ProtoTCP, 22)
	frag[14+6], frag[14+7] = 0x00, 0x10 // fragment offset 16: no ports here
	run := func(t *testing.T, cases []struct {
		name  string
		frame []byte
		drop  bool
	}) {
		t.Helper()
		for _, tc := range cases {
			drop, _, err := f.TestRun(tc.frame, 1)
			if err != nil {
				t.Fatal(err)
			}
			if drop != tc.drop {
				t.Errorf("%s: drop = %v, want %v", tc.name, drop, tc.drop)
			}
		}
	}
	run(t, []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"banned v4 to open tcp/22", l4frame("198.18.0.10", ProtoTCP, 22), false},
		{"banned range to open tcp/22", l4frame("198.18.5.1", ProtoTCP, 22), false},
		{"banned v4 to open udp/53", l4frame("198.18.0.10", ProtoUDP, 53), false},
		{"banned v4 to udp/22", l4frame("198.18.0.10", ProtoUDP, 22), true},
		{"banned v4 to tcp/80", l4frame("198.18.0.10", ProtoTCP, 80), true},
		{"banned v4 to tcp/22, later fragment", frag, true},
		{"banned v4, L4 header cut short", l4frame("198.18.0.10", ProtoTCP, 22)[:14+20+3], true},
		{"banned v6 to open tcp/22", l4frame("2001:db8::10", ProtoTCP, 22), false},
		{"banned v6 to tcp/80", l4frame("2001:db8::10", ProtoTCP, 80), true},
		{"banned v6 to tcp/22 behind a hop-by-hop header", l4frame("2001:db8::10", 0, 22), true},
		{"unbanned to tcp/80", l4frame("198.18.0.11", ProtoTCP, 80), false},
	})

	// Replacing the list closes what it no longer holds.
	if err := f.SetOpenPorts([]OpenPort{{ProtoUDP, 53}}); err != nil {
		t.Fatal(err)
	}
	run(t, []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"tcp/22 after it left the list", l4frame("198.18.0.10", ProtoTCP, 22), true},
		{"udp/53 kept", l4frame("198.18.0.10", ProtoUDP, 53), false},
	})
	if err := f.SetOpenPorts([]OpenPort{{1, 22}}); err == nil {
		t.Error("an ICMP open port was accepted")
	}

	// Loaded without open ports, the program has no port check to fill.
	none := loadTest(t, Options{MaxSingles: 64, MaxRanges: 16})
	if err := none.SetOpenPorts([]OpenPort{{ProtoTCP, 22}}); err == nil {
		t.Error("open ports set on a program loaded without the check")
	}
}

// BenchmarkOpenPorts is the program's cost per packet with never_block
// set, for a banned source: to a closed port (dropped after the port
// check) and to an open one (passed). Compare BenchmarkTestRun's
// v4-drop-single, loaded without open ports.
func BenchmarkOpenPorts(b *testing.B) {
	f := loadTest(b, Options{MaxSingles: 64, MaxRanges: 16, OpenPorts: []OpenPort{{ProtoTCP, 22}}})
	if err := f.Set([]Ban{{Prefix: netip.MustParsePrefix("198.18.0.10/32")}}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"v4-banned-to-closed", l4frame("198.18.0.10", ProtoTCP, 80), true},
		{"v4-banned-to-open", l4frame("198.18.0.10", ProtoTCP, 22), false},
		{"v4-unbanned", l4frame("198.18.0.11", ProtoTCP, 80), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			drop, per, err := f.TestRun(bc.frame, b.N)
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
