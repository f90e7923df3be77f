package enforce

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// geoMap is a GeoNetworks over fixed networks, keyed "Country:CN".
type geoMap map[string][]string

func (g geoMap) Networks(geo model.Geo) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range g[geo.Scope+":"+geo.Value] {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out, nil
}

func geoBan(id int64, scope, value string, d time.Duration) model.Decision {
	g, err := model.ParseGeo(scope, value)
	if err != nil {
		panic(err)
	}
	return model.Decision{ID: id, Geo: g, Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(d)}
}

// held is what the backend holds, sorted.
func (m *memBackend) prefixes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p := range m.held {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func (r *Reconciler) desiredPrefixes(t *testing.T) []string {
	t.Helper()
	var out []string
	err := r.Do(context.Background(), func() error {
		for k := range r.desired.all() {
			out = append(out, k.prefix().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

var testGeo = geoMap{
	"Country:CN": {"198.51.100.0/24", "203.0.113.0/26", "2001:db8:1::/48"},
	"Country:FR": {"192.0.2.0/24"},
	// An AS holding loopback, a host address and an allowlisted one.
	"AS:64500": {"127.0.0.0/16", "198.18.0.0/30", "198.18.4.0/30", "2001:db8:2::/126"},
}

// Country and AS decisions are banned as the networks their target has,
// carved around what the guard protects, and removed exactly.
func TestGeoDecisions(t *testing.T) {
	guard := NewGuard(GuardConfig{
		Allowlist: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("2001:db8:2::1/128")},
		MinBits4:  8, MinBits6: 32,
		HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("198.18.4.1")}, nil },
	})
	tests := []struct {
		name string
		d    model.Decision
		want []string
	}{
		{"country", geoBan(1, "country", "CN", time.Hour), []string{"198.51.100.0/24", "2001:db8:1::/48", "203.0.113.0/26"}},
		{"carved around loopback, allowlist and host", geoBan(2, "as", "64500", time.Hour), []string{
			"198.18.0.0/31", "198.18.0.3/32", // around the allowlisted .2
			"198.18.4.0/32", "198.18.4.2/31", // around the host's .1
			"2001:db8:2::/128", "2001:db8:2::2/127", // around the allowlisted ::1
		}},
		{"unknown country", geoBan(3, "country", "DE", time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMem()
			r := startReconciler(t, ReconcilerConfig{Guard: guard, Geo: testGeo}, nil, mem)
			ctx := context.Background()
			if err := r.Apply(ctx, []model.Decision{tt.d}, nil); err != nil {
				t.Fatal(err)
			}
			if got := r.desiredPrefixes(t); !slices.Equal(got, tt.want) {
				t.Errorf("desired set = %v\nwant %v", got, tt.want)
			}
			if got := mem.prefixes(); !slices.Equal(got, tt.want) {
				t.Errorf("kernel = %v\nwant %v", got, tt.want)
			}
			for p, exp := range mem.held {
				if !exp.Equal(tt.d.Until) {
					t.Errorf("%s expires %v, want the decision's %v", p, exp, tt.d.Until)
				}
			}
			if err := r.Apply(ctx, nil, []model.Decision{tt.d}); err != nil {
				t.Fatal(err)
			}
			if got := mem.prefixes(); len(got) != 0 {
				t.Errorf("kernel after the decision's removal = %v", got)
			}
			if n, p := r.GeoDecisions(); n != 0 || p != 0 {
				t.Errorf("GeoDecisions after removal = %d, %d", n, p)
			}
		})
	}
}

// A network shared with an address ban stays while either holds it.
func TestGeoSharesPrefixes(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{Geo: testGeo}, nil, mem)
	ctx := context.Background()
	fr, rng := geoBan(1, "country", "FR", time.Hour), ban(2, "192.0.2.0/24", 2*time.Hour)
	if err := r.Apply(ctx, []model.Decision{fr, rng}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, nil, []model.Decision{fr}); err != nil {
		t.Fatal(err)
	}
	if exp, ok := mem.get("192.0.2.0/24"); !ok || !exp.Equal(rng.Until) {
		t.Errorf("range ban after the country's removal: held %v until %v", ok, exp)
	}
}

// Without a database, a Country decision is refused, not ignored; simulated
// ones and other types are not expanded at all.
func TestGeoRefusedWithoutDatabase(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	ctx := context.Background()
	err := r.Apply(ctx, []model.Decision{geoBan(1, "country", "CN", time.Hour), ban(2, "198.18.0.9/32", time.Hour)}, nil)
	if !errors.Is(err, ErrNoGeoIP) {
		t.Errorf("Apply = %v, want ErrNoGeoIP", err)
	}
	if got := mem.prefixes(); !slices.Equal(got, []string{"198.18.0.9/32"}) {
		t.Errorf("kernel = %v, want the address ban alone", got)
	}
	sim := geoBan(3, "country", "CN", time.Hour)
	sim.Simulated = true
	if err := r.Apply(ctx, []model.Decision{sim}, nil); err != nil {
		t.Errorf("simulated country decision: %v", err)
	}
}

// Recarve takes a newly allowlisted address out of a country's ban, and
// puts it back once it is no longer allowlisted.
func TestGeoRecarve(t *testing.T) {
	guard := NewGuard(GuardConfig{HostAddrs: func() ([]netip.Addr, error) { return nil, nil }})
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{Guard: guard, Geo: testGeo}, nil, mem)
	ctx := context.Background()
	if err := r.Apply(ctx, []model.Decision{geoBan(1, "country", "FR", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	guard.SetExtra(func(p netip.Prefix) []netip.Prefix {
		if a := netip.MustParsePrefix("192.0.2.128/25"); a.Overlaps(p) {
			return []netip.Prefix{a}
		}
		return nil
	})
	if err := r.Recarve(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mem.prefixes(); !slices.Equal(got, []string{"192.0.2.0/25"}) {
		t.Errorf("kernel after allowlisting 192.0.2.128/25 = %v", got)
	}
	guard.SetExtra(nil)
	if err := r.Recarve(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mem.prefixes(); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("kernel after the allowlist entry went = %v", got)
	}
}

func TestCarve(t *testing.T) {
	guard := NewGuard(GuardConfig{
		Allowlist: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		MinBits4:  8, MinBits6: 32,
		HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("2001:db8::1")}, nil },
	})
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"198.51.100.0/24", []string{"198.51.100.0/24"}, false},
		{"6.0.0.0/7", []string{"6.0.0.0/8", "7.0.0.0/8"}, false},
		{"126.0.0.0/7", []string{"126.0.0.0/8"}, false},
		{"10.0.0.0/14", []string{"10.0.0.0/16", "10.2.0.0/15"}, false},
		{"2001:db8::/126", []string{"2001:db8::/128", "2001:db8::2/127"}, false},
		{"2000::/16", nil, true},
		{"224.0.0.0/4", nil, false},
	}
	for _, tt := range tests {
		got, err := guard.Carve(netip.MustParsePrefix(tt.in))
		var gs []string
		for _, p := range got {
			gs = append(gs, p.String())
		}
		if (err != nil) != tt.err || !slices.Equal(gs, tt.want) {
			t.Errorf("Carve(%s) = %v, %v; want %v (error %v)", tt.in, gs, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("Carve(%s): error %v is not ErrRefused", tt.in, err)
		}
	}
	broken := NewGuard(GuardConfig{HostAddrs: func() ([]netip.Addr, error) { return nil, errors.New("netlink down") }})
	if ps, err := broken.Carve(netip.MustParsePrefix("198.51.100.0/24")); err == nil || ps != nil {
		t.Errorf("Carve without the host's addresses = %v, %v; want nothing and an error", ps, err)
	}
}
