package nft

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func seg(start, end string, exp time.Time) segment {
	return segment{start: netip.MustParseAddr(start), end: netip.MustParseAddr(end), expiry: exp}
}

var segCmp = cmp.Comparer(func(a, b segment) bool {
	return a.start == b.start && a.end == b.end && a.expiry.Equal(b.expiry)
})

func TestNormalize(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h1, h2, past := now.Add(time.Hour), now.Add(2*time.Hour), now.Add(-time.Second)
	never := time.Time{}
	for _, tc := range []struct {
		name   string
		ranges map[string]time.Time
		want   []segment
	}{
		{"empty", nil, nil},
		{"one", map[string]time.Time{"198.18.0.0/16": h1}, []segment{seg("198.18.0.0", "198.18.255.255", h1)}},
		{"inner outlives outer", map[string]time.Time{"198.18.0.0/16": h1, "198.18.4.0/24": h2}, []segment{
			seg("198.18.0.0", "198.18.3.255", h1),
			seg("198.18.4.0", "198.18.4.255", h2),
			seg("198.18.5.0", "198.18.255.255", h1),
		}},
		{"outer outlives inner", map[string]time.Time{"198.18.0.0/16": h2, "198.18.4.0/24": h1}, []segment{
			seg("198.18.0.0", "198.18.255.255", h2),
		}},
		{"never beats any expiry", map[string]time.Time{"198.18.0.0/16": h2, "198.18.0.0/24": never}, []segment{
			seg("198.18.0.0", "198.18.0.255", never),
			seg("198.18.1.0", "198.18.255.255", h2),
		}},
		{"adjacent equal merge", map[string]time.Time{"198.18.0.0/24": h1, "198.18.1.0/24": h1, "198.18.3.0/24": h1}, []segment{
			seg("198.18.0.0", "198.18.1.255", h1),
			seg("198.18.3.0", "198.18.3.255", h1),
		}},
		{"adjacent different stay apart", map[string]time.Time{"198.18.0.0/24": h1, "198.18.1.0/24": h2}, []segment{
			seg("198.18.0.0", "198.18.0.255", h1),
			seg("198.18.1.0", "198.18.1.255", h2),
		}},
		{"expired left out", map[string]time.Time{"198.18.0.0/16": past, "198.18.4.0/24": h1}, []segment{
			seg("198.18.4.0", "198.18.4.255", h1),
		}},
		{"nested three deep", map[string]time.Time{"198.18.0.0/15": h1, "198.18.0.0/16": h2, "198.18.128.0/17": h1}, []segment{
			seg("198.18.0.0", "198.18.255.255", h2),
			seg("198.19.0.0", "198.19.255.255", h1),
		}},
		{"top of space", map[string]time.Time{"255.255.255.0/24": h1}, []segment{seg("255.255.255.0", "255.255.255.255", h1)}},
		{"v6", map[string]time.Time{"2001:db8::/32": h1, "2001:db8:1::/48": h2}, []segment{
			seg("2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff", h1),
			seg("2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", h2),
			seg("2001:db8:2::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", h1),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := map[netip.Prefix]time.Time{}
			for p, e := range tc.ranges {
				in[netip.MustParsePrefix(p)] = e
			}
			got := normalize(in, now)
			if diff := cmp.Diff(tc.want, got, segCmp); diff != "" {
				t.Errorf("normalize (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffSegments(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h1, h2 := now.Add(time.Hour), now.Add(2*time.Hour)
	have := []segment{seg("198.18.0.0", "198.18.3.255", h1), seg("198.18.4.0", "198.18.4.255", h2.Add(3*time.Millisecond))}
	want := []segment{seg("198.18.0.0", "198.18.3.255", h2), seg("198.18.4.0", "198.18.4.255", h2), seg("198.18.9.0", "198.18.9.255", h1)}
	del, add := diffSegments(have, want, time.Second)
	if d := cmp.Diff([]segment{have[0]}, del, segCmp); d != "" {
		t.Errorf("del (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]segment{want[0], want[2]}, add, segCmp); d != "" {
		t.Errorf("add (-want +got):\n%s", d)
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		start, end string
		want       []string
	}{
		{"198.18.0.0", "198.18.255.255", []string{"198.18.0.0/16"}},
		{"198.18.5.0", "198.18.255.255", []string{"198.18.5.0/24", "198.18.6.0/23", "198.18.8.0/21", "198.18.16.0/20", "198.18.32.0/19", "198.18.64.0/18", "198.18.128.0/17"}},
		{"198.18.0.7", "198.18.0.7", []string{"198.18.0.7/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"2001:db8::1", "2001:db8::2", []string{"2001:db8::1/128", "2001:db8::2/128"}},
	} {
		got := rangePrefixes(netip.MustParseAddr(tc.start), netip.MustParseAddr(tc.end))
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if !slices.Equal(s, tc.want) {
			t.Errorf("rangePrefixes(%s, %s) = %v, want %v", tc.start, tc.end, s, tc.want)
		}
	}
}

func TestCovered(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h1, h2 := now.Add(time.Hour), now.Add(2*time.Hour)
	segs := []segment{
		seg("198.18.0.0", "198.18.3.255", h1),
		seg("198.18.4.0", "198.18.4.255", h2),
		seg("198.18.5.0", "198.18.255.255", h1),
	}
	for _, tc := range []struct {
		p    string
		exp  time.Time
		want bool
	}{
		{"198.18.0.0/16", h1, true},
		{"198.18.4.0/24", h2, true},
		{"198.18.0.0/16", h2, false},
		{"198.18.0.0/15", h1, false},
		{"198.18.200.0/24", h1.Add(500 * time.Millisecond), true},
		{"198.18.200.0/24", time.Time{}, false},
	} {
		if got := covered(segs, netip.MustParsePrefix(tc.p), tc.exp, time.Second); got != tc.want {
			t.Errorf("covered(%s, %v) = %v, want %v", tc.p, tc.exp.Sub(now), got, tc.want)
		}
	}
	gap := []segment{seg("198.18.0.0", "198.18.3.255", h1), seg("198.18.5.0", "198.18.255.255", h1)}
	if covered(gap, netip.MustParsePrefix("198.18.0.0/16"), h1, time.Second) {
		t.Error("covered across a gap")
	}
}
