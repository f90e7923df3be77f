package allowlist

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/model"
)

// geoMap is a Geo over fixed networks, keyed "country:FR".
type geoMap map[string][]string

func (g geoMap) Networks(geo model.Geo) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range g[geo.String()] {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out, nil
}

var testGeo = geoMap{
	"country:FR": {"192.0.2.0/24", "198.51.100.128/25", "2001:db8:f::/48"},
	"as:64500":   {"203.0.113.0/26"},
}

// An address whose country or AS an entry names is protected, by that
// entry, through the database network that holds it.
func TestGeoEntries(t *testing.T) {
	var changed int
	m := New(Config{
		Static: []Entry{
			{Value: "country:FR", Comment: "our customers", Source: SourceConfig, File: "/etc/moat/moat.yaml", Line: 40},
			{Value: "as:AS64500", Comment: "transit", Source: SourceConfig, File: "/etc/moat/moat.yaml", Line: 41},
		},
		Geo:        testGeo,
		GeoChanged: func(context.Context) { changed++ },
	})
	m.Step(context.Background())
	tests := []struct {
		p         string
		entry, in string // "" when not protected
	}{
		{"192.0.2.7/32", "country:FR", "192.0.2.0/24"},
		{"198.51.100.200/32", "country:FR", "198.51.100.128/25"},
		{"198.51.100.7/32", "", ""},
		{"2001:db8:f::1/128", "country:FR", "2001:db8:f::/48"},
		{"203.0.113.9/32", "as:AS64500", "203.0.113.0/26"},
		{"203.0.113.64/32", "", ""},
		// A range overlapping a network is protected in part.
		{"198.51.100.0/24", "country:FR", "198.51.100.128/25"},
		{"198.51.0.0/16", "country:FR", "198.51.100.128/25"},
		{"10.0.0.0/8", "", ""},
	}
	for _, tt := range tests {
		ms := m.Check(pfx(tt.p))
		switch {
		case tt.entry == "" && len(ms) > 0:
			t.Errorf("%s protected by %+v", tt.p, ms)
		case tt.entry != "" && (len(ms) != 1 || ms[0].Value != tt.entry || ms[0].Prefix.String() != tt.in):
			t.Errorf("%s: matches %+v, want %s through %s", tt.p, ms, tt.entry, tt.in)
		}
		if err := m.Protect(pfx(tt.p)); (err != nil) != (tt.entry != "") {
			t.Errorf("%s: Protect = %v", tt.p, err)
		} else if err != nil && !strings.Contains(err.Error(), "is allowlisted by "+tt.entry+" ("+tt.in+"), /etc/moat/moat.yaml:4") {
			t.Errorf("%s: Protect = %v", tt.p, err)
		}
		if got := m.GeoProtected(pfx(tt.p)); got != (tt.entry != "") {
			t.Errorf("%s: GeoProtected = %v", tt.p, got)
		}
	}
	// The guard's view: every network of the entries inside a range.
	got := m.GeoOverlaps(pfx("192.0.0.0/2"))
	if want := []netip.Prefix{pfx("192.0.2.0/24"), pfx("198.51.100.128/25"), pfx("203.0.113.0/26")}; !slices.Equal(got, want) {
		t.Errorf("GeoOverlaps = %v, want %v", got, want)
	}
	// Not in Prefixes: a country is too many ranges for the lists that
	// take them.
	if ps := m.Prefixes(); len(ps) != 0 {
		t.Errorf("Prefixes = %v", ps)
	}
}

// Without a database a geo entry protects nothing, and says so.
func TestGeoEntryWithoutDatabase(t *testing.T) {
	var reported []error
	m := New(Config{
		Static: []Entry{{Value: "country:FR", Source: SourceFile, File: "/etc/moat/allow.d/geo.txt", Line: 3}},
		Report: func(err error) { reported = append(reported, err) },
	})
	m.Step(context.Background())
	m.Step(context.Background())
	if len(m.Check(pfx("192.0.2.7/32"))) != 0 {
		t.Error("a geo entry without a database protects an address")
	}
	if len(reported) != 1 || !errors.Is(reported[0], ErrNoGeoIP) || !strings.Contains(reported[0].Error(), "/etc/moat/allow.d/geo.txt:3") {
		t.Errorf("reported %v, want one ErrNoGeoIP naming the file and line", reported)
	}
}

// Run tells GeoChanged when the geo entries first protect something.
func TestGeoChanged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan struct{}, 4)
	m := New(Config{
		Static:     []Entry{{Value: "country:FR", Source: SourceConfig}},
		Geo:        testGeo,
		GeoChanged: func(context.Context) { called <- struct{}{} },
	})
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	<-called
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.0/24": "192.0.2.255", "2001:db8::/126": "2001:db8::3", "0.0.0.0/0": "255.255.255.255", "10.0.0.1/32": "10.0.0.1"} {
		if got := lastAddr(pfx(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
