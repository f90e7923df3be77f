package enforce

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// portMem is memBackend that also holds port-scoped bans.
type portMem struct {
	*memBackend
	pmu   sync.Mutex
	ports map[portKey]time.Time
}

func newPortMem() *portMem { return &portMem{memBackend: newMem(), ports: map[portKey]time.Time{}} }

// ApplyPorts refuses, as the kernel's interval sets do, an element that
// overlaps a different one of the same service.
func (m *portMem) ApplyPorts(_ context.Context, d PortDiff) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	for _, e := range d.Delete {
		delete(m.ports, portKey{e.Prefix, e.Proto, e.Port})
	}
	for _, e := range d.Set {
		k := portKey{e.Prefix, e.Proto, e.Port}
		for o := range m.ports {
			if o != k && o.service() == k.service() && o.p.Overlaps(k.p) {
				return fmt.Errorf("%v overlaps %v", k, o)
			}
		}
		m.ports[k] = e.Expiry
	}
	return nil
}

func (m *portMem) ListPorts(context.Context) ([]PortEntry, error) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	var out []PortEntry
	for k, e := range m.ports {
		out = append(out, PortEntry{Prefix: k.p, Proto: k.proto, Port: k.port, Expiry: e})
	}
	return out, nil
}

func (m *portMem) port(p string, proto uint8, port uint16) (time.Time, bool) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	e, ok := m.ports[portKey{netip.MustParsePrefix(p), proto, port}]
	return e, ok
}

func (m *portMem) nports() int {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	return len(m.ports)
}

func scopedBan(id int64, value string, d time.Duration, proto string, ports ...uint16) model.Decision {
	b := ban(id, value, d)
	b.Ports, b.Protocol = ports, proto
	return b
}

func TestPortScopedDecisions(t *testing.T) {
	pm, plain := newPortMem(), newMem()
	seed := []model.Decision{scopedBan(1, "198.18.0.1/32", time.Hour, "tcp", 25)}
	r := startReconciler(t, ReconcilerConfig{IPv6Prefix: 64}, seed, pm, plain)
	ctx := context.Background()
	<-r.Ready()
	if _, ok := pm.port("198.18.0.1/32", model.ProtoTCP, 25); !ok {
		t.Error("seeded port-scoped ban not in the kernel after the start")
	}

	// Two decisions on one element: it stays until the later ends, and is
	// never an address ban in any backend.
	a := scopedBan(2, "2001:db8::7/128", time.Hour, "", 53)
	b := scopedBan(3, "2001:db8::9/128", 2*time.Hour, "udp", 53)
	if err := r.Apply(ctx, []model.Decision{a, b, ban(4, "198.18.0.2/32", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if n := pm.nports(); n != 3 {
		t.Errorf("%d port elements, want 3 (tcp/25, tcp/53 and udp/53 of the /64)", n)
	}
	if exp, _ := pm.port("2001:db8::/64", model.ProtoUDP, 53); !exp.Equal(b.Until) {
		t.Errorf("udp/53 expiry %v, want the later decision's %v", exp, b.Until)
	}
	for _, be := range []*memBackend{pm.memBackend, plain} {
		if _, ok := be.get("2001:db8::/64"); ok {
			t.Error("a port-scoped decision became an address ban")
		}
		if _, ok := be.get("198.18.0.2/32"); !ok {
			t.Error("the plain ban of the same batch is missing")
		}
	}

	if err := r.Apply(ctx, nil, []model.Decision{b}); err != nil {
		t.Fatal(err)
	}
	if exp, ok := pm.port("2001:db8::/64", model.ProtoUDP, 53); !ok || !exp.Equal(a.Until) {
		t.Errorf("udp/53 after removing one of two decisions: %v %v, want %v", exp, ok, a.Until)
	}
	if err := r.Apply(ctx, nil, []model.Decision{a}); err != nil {
		t.Fatal(err)
	}
	if n := pm.nports(); n != 1 {
		t.Errorf("%d port elements after removing both, want 1", n)
	}

	// Enqueue (the alert path) and a repair of a lost element.
	r.Enqueue(ctx, []model.Decision{scopedBan(5, "198.18.0.5/32", time.Hour, "tcp", 22, 80)})
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pm.nports(); n != 3 {
		t.Errorf("%d port elements after Enqueue, want 3", n)
	}
	pm.pmu.Lock()
	clear(pm.ports)
	pm.pmu.Unlock()
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pm.nports(); n != 3 {
		t.Errorf("%d port elements after a verify repaired a flushed set, want 3", n)
	}
}

// A port-scoped ban inside a wider one of the same service is held by the
// wider one, and comes back when that one goes.
func TestNestedPortScopedBans(t *testing.T) {
	pm := newPortMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, pm)
	ctx := context.Background()
	<-r.Ready()
	narrow := scopedBan(1, "198.18.0.5/32", 2*time.Hour, "tcp", 25)
	wide := scopedBan(2, "198.18.0.0/24", time.Hour, "tcp", 25, 26)
	other := scopedBan(3, "198.18.0.6/32", time.Hour, "udp", 25)
	for _, d := range []model.Decision{narrow, wide, other} {
		if err := r.Apply(ctx, []model.Decision{d}, nil); err != nil {
			t.Fatalf("apply %d: %v", d.ID, err)
		}
	}
	if _, ok := pm.port("198.18.0.5/32", model.ProtoTCP, 25); ok {
		t.Error("the narrower ban is held beside the wider one")
	}
	for _, k := range []struct {
		p     string
		proto uint8
		port  uint16
	}{{"198.18.0.0/24", model.ProtoTCP, 25}, {"198.18.0.0/24", model.ProtoTCP, 26}, {"198.18.0.6/32", model.ProtoUDP, 25}} {
		if _, ok := pm.port(k.p, k.proto, k.port); !ok {
			t.Errorf("%s %d/%d missing", k.p, k.port, k.proto)
		}
	}
	if err := r.Apply(ctx, nil, []model.Decision{wide}); err != nil {
		t.Fatal(err)
	}
	if exp, ok := pm.port("198.18.0.5/32", model.ProtoTCP, 25); !ok || !exp.Equal(narrow.Until) {
		t.Errorf("the narrower ban did not come back with its own expiry: %v %v", exp, ok)
	}
	if n := pm.nports(); n != 2 {
		t.Errorf("%d elements, want 2", n)
	}
}

func TestSplitPortsKeepsPlainSlice(t *testing.T) {
	ds := []model.Decision{ban(1, "198.18.0.1/32", time.Hour), ban(2, "198.18.0.2/32", time.Hour)}
	plain, scoped := splitPorts(ds)
	if &plain[0] != &ds[0] || scoped != nil {
		t.Error("a batch without port-scoped decisions was copied")
	}
	ds = append(ds, scopedBan(3, "198.18.0.3/32", time.Hour, "tcp", 25))
	plain, scoped = splitPorts(ds)
	if len(plain) != 2 || len(scoped) != 1 || scoped[0].ID != 3 {
		t.Errorf("split = %v / %v", plain, scoped)
	}
}
