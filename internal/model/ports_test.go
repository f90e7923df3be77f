package model

import (
	"errors"
	"slices"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
		bad  bool
	}{
		{in: "", want: nil},
		{in: "25", want: []uint16{25}},
		{in: "465, 25,25", want: []uint16{25, 465}},
		{in: "0", bad: true},
		{in: "65536", bad: true},
		{in: "25,", bad: true},
		{in: "smtp", bad: true},
	} {
		got, err := ParsePorts(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrBadPorts) {
				t.Errorf("ParsePorts(%q) error = %v, want ErrBadPorts", tc.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back := FormatPorts(got); back != FormatPorts(tc.want) {
			t.Errorf("FormatPorts(%v) = %q", got, back)
		}
	}
}

func TestCheckProtocol(t *testing.T) {
	for _, tc := range []struct {
		proto string
		ports []uint16
		ok    bool
	}{
		{"", nil, true},
		{"", []uint16{25}, true},
		{"tcp", []uint16{25}, true},
		{"udp", []uint16{53}, true},
		{"tcp", nil, false},
		{"icmp", []uint16{1}, false},
	} {
		if err := CheckProtocol(tc.proto, tc.ports); (err == nil) != tc.ok {
			t.Errorf("CheckProtocol(%q, %v) = %v, want ok=%v", tc.proto, tc.ports, err, tc.ok)
		}
	}
}

func TestProtocols(t *testing.T) {
	if got := (Decision{Ports: []uint16{25}, Protocol: "tcp"}).Protocols(); !slices.Equal(got, []uint8{ProtoTCP}) {
		t.Errorf("tcp: %v", got)
	}
	if got := (Decision{Ports: []uint16{25}}).Protocols(); !slices.Equal(got, []uint8{ProtoTCP, ProtoUDP}) {
		t.Errorf("both: %v", got)
	}
}

func TestParsePortProtos(t *testing.T) {
	got, err := ParsePortProtos([]string{"53/udp", "22/tcp", "443", "22/tcp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []PortProto{{ProtoTCP, 22}, {ProtoTCP, 443}, {ProtoUDP, 53}, {ProtoUDP, 443}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"22/icmp", "0/tcp", "x", "70000"} {
		if _, err := ParsePortProtos([]string{bad}); !errors.Is(err, ErrBadPorts) {
			t.Errorf("%q: error %v, want ErrBadPorts", bad, err)
		}
	}
}
