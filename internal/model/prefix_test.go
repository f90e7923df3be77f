package model

import (
	"net/netip"
	"testing"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // canonical prefix; "" means an error
		scope    string
		value    string // ValueString of the result
	}{
		{"ipv4 address", "198.18.0.1", "198.18.0.1/32", ScopeIP, "198.18.0.1"},
		{"space around", " 198.18.0.1\t", "198.18.0.1/32", ScopeIP, "198.18.0.1"},
		{"ipv4 host bits masked", "198.18.3.9/16", "198.18.0.0/16", ScopeRange, "198.18.0.0/16"},
		{"ipv4 /32 is an address", "198.18.0.1/32", "198.18.0.1/32", ScopeIP, "198.18.0.1"},
		{"ipv6 address", "2001:db8::1", "2001:db8::1/128", ScopeIP, "2001:db8::1"},
		{"ipv6 host bits masked", "2001:db8:1:2::5/48", "2001:db8:1::/48", ScopeRange, "2001:db8:1::/48"},
		{"mapped address", "::ffff:198.18.0.1", "198.18.0.1/32", ScopeIP, "198.18.0.1"},
		{"mapped /128", "::ffff:198.18.0.1/128", "198.18.0.1/32", ScopeIP, "198.18.0.1"},
		{"mapped /112", "::ffff:198.18.0.0/112", "198.18.0.0/16", ScopeRange, "198.18.0.0/16"},
		{"mapped /104 masked", "::ffff:10.1.2.3/104", "10.0.0.0/8", ScopeRange, "10.0.0.0/8"},
		{"mapped /96 is all of ipv4", "::ffff:0.0.0.0/96", "0.0.0.0/0", ScopeRange, "0.0.0.0/0"},
		{"mapped /96 in hex", "::ffff:0:0/96", "0.0.0.0/0", ScopeRange, "0.0.0.0/0"},
		// Shorter than the mapped block: an IPv6 range covering all of it.
		{"mapped /80 stays ipv6", "::ffff:0:0/80", "::/80", ScopeRange, "::/80"},
		{"mapped /95 stays ipv6", "::ffff:198.18.0.0/95", "::fffe:0:0/95", ScopeRange, "::fffe:0:0/95"},
		{"ipv4-compatible is ipv6", "::198.18.0.1", "::c612:1/128", ScopeIP, "::c612:1"},
		{"zoned address", "fe80::1%eth0", "", "", ""},
		{"zoned prefix", "fe80::1%eth0/64", "", "", ""},
		{"too long", "198.18.0.0/33", "", "", ""},
		{"not an address", "example.com", "", "", ""},
		{"empty", "", "", "", ""},
		{"bare slash", "/24", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseValue(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ParseValue(%q) = %v, want an error", tc.in, p)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("ParseValue(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			}
			if got := Canonical(p); got != p {
				t.Errorf("Canonical(%v) = %v, want it unchanged", p, got)
			}
			if got := ScopeOf(p); got != tc.scope {
				t.Errorf("ScopeOf(%v) = %s, want %s", p, got, tc.scope)
			}
			if got := ValueString(p); got != tc.value {
				t.Errorf("ValueString(%v) = %s, want %s", p, got, tc.value)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.7/24":         "198.18.0.0/24",
		"::ffff:198.18.0.7/128": "198.18.0.7/32",
		"::ffff:198.18.7.1/120": "198.18.7.0/24",
		"::ffff:10.0.0.0/104":   "10.0.0.0/8",
		"::ffff:0:0/96":         "0.0.0.0/0",
		"::ffff:0:0/80":         "::/80",
		"2001:db8::1/32":        "2001:db8::/32",
		"2001:db8:1:2::5/48":    "2001:db8:1::/48",
	} {
		if got := Canonical(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("Canonical(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Canonical(netip.Prefix{}); got.IsValid() {
		t.Errorf("Canonical of the zero prefix = %v, want invalid", got)
	}
}
