package nft

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// tcpPair is an attacker namespace and moat's namespace joined by a veth,
// with TCP listeners on the given ports in moat's namespace.
type tcpPair struct {
	a, m *testutil.NetNS
}

func newTCPPair(t *testing.T, ports ...int) *tcpPair {
	t.Helper()
	p := &tcpPair{a: testutil.NewNetNS(t), m: testutil.NewNetNS(t)}
	testutil.VethPair(t, p.a, p.m,
		[]string{"198.18.0.2/16", "198.18.0.3/16", "2001:db8::2/64"},
		[]string{mAddr4 + "/16", mAddr6 + "/64"})
	for _, port := range ports {
		var ln net.Listener
		if err := p.m.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(port)))
			return err
		}); err != nil {
			t.Fatalf("listen on %d in moat's namespace: %v", port, err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
	}
	return p
}

// dial connects from src in the attacker namespace to port in moat's
// namespace. A dropped SYN shows as a timeout; timeout bounds how long a
// refused connection is waited for, so only the "reaches" case needs the
// generous one.
func (p *tcpPair) dial(t *testing.T, src string, port int, timeout time.Duration) error {
	t.Helper()
	sa := netip.MustParseAddr(src)
	dst := netip.MustParseAddr(mAddr4)
	if sa.Is6() {
		dst = netip.MustParseAddr(mAddr6)
	}
	return p.a.Do(func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(sa, 0))}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// reaches asserts src can open a connection to port: generous, since a
// loaded machine can be slow but a ban cannot be flaky.
func (p *tcpPair) reaches(t *testing.T, src string, port int) {
	t.Helper()
	if err := p.dial(t, src, port, 10*time.Second); err != nil {
		t.Errorf("%s -> port %d: %v, want a connection", src, port, err)
	}
}

// blocked asserts the SYN from src to port is dropped: the dial times out
// rather than being refused or connecting.
func (p *tcpPair) blocked(t *testing.T, src string, port int) {
	t.Helper()
	err := p.dial(t, src, port, 1500*time.Millisecond)
	if err == nil {
		t.Errorf("%s -> port %d connected, want it dropped", src, port)
		return
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("%s -> port %d: %v, want a timeout (dropped SYN)", src, port, err)
	}
}

func portEntry(p string, proto uint8, port uint16, exp time.Time) enforce.PortEntry {
	return enforce.PortEntry{Prefix: netip.MustParsePrefix(p), Proto: proto, Port: port, Expiry: exp}
}

func applyPorts(t *testing.T, b *Backend, d enforce.PortDiff) {
	t.Helper()
	if err := b.ApplyPorts(context.Background(), d); err != nil {
		t.Fatalf("ApplyPorts: %v", err)
	}
}

func TestPortScopedBan(t *testing.T) {
	p := newTCPPair(t, 80, 25)
	b := openIn(t, p.m, Config{})
	for _, src := range []string{"198.18.0.2", "198.18.0.3", "2001:db8::2"} {
		p.reaches(t, src, 25)
	}
	// No port drop rule until a port-scoped ban needs one.
	if chain := nft(t, p.m, "list", "chain", "inet", "moat", "moat-prerouting"); strings.Contains(chain, "_port") {
		t.Errorf("port drop rules before any port-scoped ban:\n%s", chain)
	}

	exp := time.Now().Add(time.Hour)
	applyPorts(t, b, enforce.PortDiff{Set: []enforce.PortEntry{
		portEntry("198.18.0.2/32", model.ProtoTCP, 25, exp),
		portEntry("198.18.0.2/32", model.ProtoTCP, 465, exp),
		portEntry("2001:db8::/64", model.ProtoTCP, 25, time.Time{}),
		// UDP 80 does not block TCP 80.
		portEntry("198.18.0.2/32", model.ProtoUDP, 80, exp),
	}})
	p.reaches(t, "198.18.0.2", 80)
	p.blocked(t, "198.18.0.2", 25)
	p.reaches(t, "198.18.0.3", 25) // a neighbour is not banned
	chain := nft(t, p.m, "list", "chain", "inet", "moat", "moat-prerouting")
	for _, rule := range []string{
		"ip saddr . meta l4proto . th dport @ban4_port counter",
		"ip6 saddr . meta l4proto . th dport @ban6_port counter",
	} {
		if !strings.Contains(chain, rule) {
			t.Errorf("chain after the first port-scoped ban lacks %q:\n%s", rule, chain)
		}
	}
	// A second Open (a restart) keeps the rules the held bans need.
	b2 := openIn(t, p.m, Config{})
	if !b2.portRules {
		t.Error("a restart with port-scoped bans held did not keep their drop rules")
	}
	p.blocked(t, "198.18.0.2", 25)
	p.reaches(t, "2001:db8::2", 80)
	p.blocked(t, "2001:db8::2", 25)
	if c := counters(t, b); c[setPort4].Packets == 0 || c[setPort6].Packets == 0 {
		t.Errorf("port drop counters %+v, want both families counted", c)
	}

	got, err := b.ListPorts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Errorf("ListPorts = %v, want 4 entries", got)
	}

	// Moving the expiry and deleting: the ban of 25 ends, 465's stays,
	// and deleting something the kernel lacks does not fail.
	applyPorts(t, b, enforce.PortDiff{
		Set: []enforce.PortEntry{portEntry("198.18.0.2/32", model.ProtoTCP, 465, exp.Add(time.Hour))},
		Delete: []enforce.PortEntry{
			portEntry("198.18.0.2/32", model.ProtoTCP, 25, time.Time{}),
			portEntry("198.18.0.9/32", model.ProtoTCP, 25, time.Time{}),
			portEntry("2001:db8::/64", model.ProtoTCP, 25, time.Time{}),
		},
	})
	p.reaches(t, "198.18.0.2", 25)
	p.reaches(t, "2001:db8::2", 25)
	got, err = b.ListPorts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y enforce.PortEntry) int { return int(x.Proto) - int(y.Proto) })
	want := []enforce.PortEntry{
		portEntry("198.18.0.2/32", model.ProtoTCP, 465, exp.Add(time.Hour)),
		portEntry("198.18.0.2/32", model.ProtoUDP, 80, exp),
	}
	if d := cmp.Diff(want, got, portsCmp); d != "" {
		t.Errorf("ListPorts after the second apply (-want +got):\n%s", d)
	}

	// A wider element replaces a narrower one of the same service in one
	// diff: the set refuses the two side by side, so the delete goes first.
	applyPorts(t, b, enforce.PortDiff{
		Set:    []enforce.PortEntry{portEntry("198.18.0.0/24", model.ProtoTCP, 465, exp)},
		Delete: []enforce.PortEntry{portEntry("198.18.0.2/32", model.ProtoTCP, 465, time.Time{})},
	})
	if err := b.ApplyPorts(context.Background(), enforce.PortDiff{Set: []enforce.PortEntry{portEntry("198.18.0.2/32", model.ProtoTCP, 465, exp)}}); err == nil {
		t.Error("the set took an element inside a wider one of the same service; the reconciler's nesting rule is then needless")
	}
}

var portsCmp = cmp.Comparer(func(a, b enforce.PortEntry) bool {
	return a.Prefix == b.Prefix && a.Proto == b.Proto && a.Port == b.Port && sameSegmentExpiry(a.Expiry, b.Expiry, expiryTolerance)
})

func TestNeverBlock(t *testing.T) {
	p := newTCPPair(t, 22, 80)
	cfg := Config{NeverBlock: []model.PortProto{{Proto: model.ProtoTCP, Port: 22}}}
	b := openIn(t, p.m, cfg)
	// Neighbour discovery first: a banned IPv6 source's solicitations are
	// dropped like the rest of its packets.
	for _, src := range []string{"198.18.0.2", "198.18.0.3", "2001:db8::2"} {
		p.reaches(t, src, 80)
	}
	apply(t, b, enforce.Diff{Set: []enforce.Entry{
		entry("198.18.0.2/32", time.Now().Add(time.Hour)),
		entry("2001:db8::/64", time.Time{}),
	}})
	applyPorts(t, b, enforce.PortDiff{Set: []enforce.PortEntry{portEntry("198.18.0.3/32", model.ProtoTCP, 22, time.Time{})}})
	for _, src := range []string{"198.18.0.2", "198.18.0.3", "2001:db8::2"} {
		p.reaches(t, src, 22)
	}
	p.blocked(t, "198.18.0.2", 80)
	p.blocked(t, "2001:db8::2", 80)
	p.reaches(t, "198.18.0.3", 80)

	// The accept rule stays first after Ensure puts back a lost drop rule,
	// and a second Open without never_block removes it.
	nft(t, p.m, "flush", "chain", "inet", "moat", "moat-prerouting")
	if err := b.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	p.reaches(t, "198.18.0.2", 22)
	p.blocked(t, "198.18.0.2", 80)
	openIn(t, p.m, Config{})
	p.blocked(t, "198.18.0.2", 22)
}

func TestNeverBlockRuleset(t *testing.T) {
	ns := testutil.NewNetNS(t)
	openIn(t, ns, Config{NeverBlock: []model.PortProto{{Proto: model.ProtoTCP, Port: 22}, {Proto: model.ProtoUDP, Port: 53}}})
	got := nft(t, ns, "list", "chain", "inet", "moat", "moat-prerouting")
	want := "meta l4proto . th dport @never_block accept"
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) < 4 || strings.TrimSpace(lines[3]) != want {
		t.Errorf("chain:\n%s\nwant %q as its first rule", got, want)
	}
	set := nft(t, ns, "list", "set", "inet", "moat", "never_block")
	for _, el := range []string{"tcp . 22", "udp . 53"} {
		if !strings.Contains(set, el) {
			t.Errorf("never_block set:\n%s\nlacks %q", set, el)
		}
	}
	if err := (&Config{NeverBlock: []model.PortProto{{Proto: 1, Port: 22}}}).setDefaults(); err == nil {
		t.Error("never_block over ICMP accepted")
	}
}

// The same with the table in the netdev family (ingress interfaces).
func TestPortsNetdevIngress(t *testing.T) {
	p := newTCPPair(t, 22, 25, 80)
	ifc := strings.TrimSpace(p.m.Run(t, "sh", "-c", "ls /sys/class/net | grep -v '^lo$'"))
	b := openIn(t, p.m, Config{Interfaces: []string{ifc}, NeverBlock: []model.PortProto{{Proto: model.ProtoTCP, Port: 22}}})
	for _, src := range []string{"198.18.0.2", "198.18.0.3"} {
		p.reaches(t, src, 80)
	}
	apply(t, b, enforce.Diff{Set: []enforce.Entry{entry("198.18.0.2/32", time.Now().Add(time.Hour))}})
	applyPorts(t, b, enforce.PortDiff{Set: []enforce.PortEntry{portEntry("198.18.0.3/32", model.ProtoTCP, 25, time.Time{})}})
	p.reaches(t, "198.18.0.2", 22)
	p.blocked(t, "198.18.0.2", 80)
	p.reaches(t, "198.18.0.3", 80)
	p.blocked(t, "198.18.0.3", 25)
}
