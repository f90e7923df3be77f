package wire

import (
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "45.77.1.2": true, "2a01:4f8::1": true, "::ffff:8.8.4.4": true,
		"10.1.2.3": false, "192.168.1.1": false, "127.0.0.1": false, "192.0.2.7": false,
		"100.64.1.1": false, "224.0.0.1": false, "2001:db8::1": false, "fe80::1": false,
		"::1": false, "0.0.0.0": false, "255.255.255.255": false, "fd00::1": false,
	} {
		if got := Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v, want %v", s, got, want)
		}
	}
}
