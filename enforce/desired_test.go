package enforce

import (
	"net/netip"
	"testing"
)

// TestDesiredSetKeys: prefixes of both families come back from all() as
// they went in, whatever their length.
func TestDesiredSetKeys(t *testing.T) {
	d := newDesiredSet()
	want := map[netip.Prefix]int64{}
	for i, s := range []string{"0.0.0.0/0", "198.18.0.0/15", "198.18.7.9/32", "255.255.255.255/32", "::/0", "2001:db8::/32", "2001:db8::1/128"} {
		p := netip.MustParsePrefix(s)
		want[p] = int64(i + 1)
		d.put(keyOf(p), cover{id: int64(i + 1)})
	}
	if d.len() != len(want) {
		t.Fatalf("len %d, want %d", d.len(), len(want))
	}
	seen := 0
	for k, c := range d.all() {
		p := k.prefix()
		if want[p] != c.id {
			t.Errorf("all() gave %v with decision %d, want %d", p, c.id, want[p])
		}
		if got, ok := d.get(keyOf(p)); !ok || got.id != c.id {
			t.Errorf("get(%v) = %v, %v", p, got, ok)
		}
		seen++
	}
	if seen != len(want) {
		t.Fatalf("all() gave %d prefixes, want %d", seen, len(want))
	}
	d.del(keyOf(netip.MustParsePrefix("198.18.7.9/32")))
	if _, ok := d.get(keyOf(netip.MustParsePrefix("198.18.7.9/32"))); ok || d.len() != len(want)-1 {
		t.Fatal("del left the prefix")
	}
}
