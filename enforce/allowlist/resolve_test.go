package allowlist

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS is an authoritative server on loopback that answers one name
// with the address the test sets, at a TTL the test sets.
type fakeDNS struct {
	addr string

	mu      sync.Mutex
	name    string
	answer  netip.Addr
	ttl     uint32
	queries int
}

func startDNS(t *testing.T, name string, answer netip.Addr, ttl uint32) *fakeDNS {
	t.Helper()
	return startDNSAt(t, "127.0.0.1:0", name, answer, ttl)
}

func startDNSAt(t *testing.T, at, name string, answer netip.Addr, ttl uint32) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{addr: pc.LocalAddr().String(), name: dns.Fqdn(name), answer: answer, ttl: ttl}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(f.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

func (f *fakeDNS) set(a netip.Addr) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *fakeDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	qq := q.Question[0]
	switch {
	case !strings.EqualFold(qq.Name, f.name):
		r.Rcode = dns.RcodeNameError
		r.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60}, Ns: "ns.example.org.", Mbox: "h.example.org.", Minttl: 7}}
	case qq.Qtype == dns.TypeA && f.answer.Is4():
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: f.name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: f.ttl}, A: f.answer.AsSlice()}}
	case qq.Qtype == dns.TypeAAAA && f.answer.Is6():
		r.Answer = []dns.RR{&dns.AAAA{Hdr: dns.RR_Header{Name: f.name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: f.ttl}, AAAA: f.answer.AsSlice()}}
	}
	_ = w.WriteMsg(r)
}

func TestDNSResolve(t *testing.T) {
	f := startDNS(t, "home.example.org", netip.MustParseAddr("198.18.7.1"), 42)
	d := &DNS{Servers: []string{f.addr}, Timeout: 5 * time.Second}
	ctx := context.Background()
	addrs, ttl, err := d.Resolve(ctx, "home.example.org")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("198.18.7.1") || ttl != 42*time.Second {
		t.Errorf("Resolve = %v, %s, %v; want [198.18.7.1], 42s", addrs, ttl, err)
	}
	f.set(netip.MustParseAddr("2001:db8::7"))
	addrs, _, err = d.Resolve(ctx, "HOME.example.org.")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("Resolve AAAA = %v, %v; want [2001:db8::7]", addrs, err)
	}
	addrs, ttl, err = d.Resolve(ctx, "gone.example.org")
	if err != nil || len(addrs) != 0 || ttl != 7*time.Second {
		t.Errorf("Resolve of a missing name = %v, %s, %v; want no address for the SOA minimum 7s", addrs, ttl, err)
	}
}

// The name moves while the manager runs: within the TTL the new address
// is protected and the old one no longer is.
func TestHostnameFollowsDNS(t *testing.T) {
	const ttl = 2
	oldA, newA := netip.MustParseAddr("198.18.7.1"), netip.MustParseAddr("198.18.7.2")
	f := startDNS(t, "home.example.org", oldA, ttl)
	changes := make(chan []netip.Prefix, 16)
	m := New(Config{
		Static:   []Entry{{Value: "home.example.org", Comment: "admin at home", Source: SourceConfig, File: "moat.yaml", Line: 4}},
		Resolver: &DNS{Servers: []string{f.addr}, Timeout: 5 * time.Second},
		Every:    time.Hour, // only the TTL wakes the manager
		Changed:  func(_ context.Context, added, _ []netip.Prefix) { changes <- added },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	waitAdded(t, changes, oldA)
	if !protected(m, oldA) || protected(m, newA) {
		t.Fatalf("after the first answer: %s protected %v, %s protected %v", oldA, protected(m, oldA), newA, protected(m, newA))
	}
	ms := m.Check(netip.PrefixFrom(oldA, 32))
	if ms[0].Value != "home.example.org" || ms[0].Comment != "admin at home" || ms[0].Where() != "moat.yaml:4" {
		t.Errorf("match %+v", ms[0])
	}

	f.set(newA)
	moved := time.Now()
	waitAdded(t, changes, newA)
	took := time.Since(moved)
	if !protected(m, newA) || protected(m, oldA) {
		t.Errorf("after the move: %s protected %v, %s protected %v", newA, protected(m, newA), oldA, protected(m, oldA))
	}
	t.Logf("new address protected %s after the answer changed (TTL %ds)", took.Round(time.Millisecond), ttl)
	// The manager asked again on the TTL, not on some other timer: the
	// change is seen within one TTL plus scheduling slack.
	if took > ttl*time.Second+3*time.Second {
		t.Errorf("the new address took %s to be protected, TTL %ds", took, ttl)
	}
}

func waitAdded(t *testing.T, changes <-chan []netip.Prefix, a netip.Addr) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case added := <-changes:
			for _, p := range added {
				if p == netip.PrefixFrom(a, a.BitLen()) {
					return
				}
			}
		case <-timeout:
			t.Fatalf("%s never became protected", a)
		}
	}
}

func protected(m *Manager, a netip.Addr) bool {
	return m.Protect(netip.PrefixFrom(a, a.BitLen())) != nil
}

// The system resolver reads its servers at each lookup.
func TestSystemResolver(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	s := System{ResolvConf: conf}
	if _, _, err := s.Resolve(context.Background(), "home.example.org"); err == nil {
		t.Error("resolved without a resolv.conf")
	}
	// resolv.conf names no port: the test's server needs port 53 on a
	// loopback address of its own.
	pc, err := net.ListenPacket("udp", "127.0.0.79:53")
	if err != nil {
		t.Skipf("SKIP: no port 53 on loopback for a test server: %v", err)
	}
	pc.Close()
	f := startDNSAt(t, "127.0.0.79:53", "home.example.org", netip.MustParseAddr("198.18.7.9"), 30)
	if err := os.WriteFile(conf, []byte("# test\nnameserver "+strings.Split(f.addr, ":")[0]+"\noptions timeout:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs, ttl, err := s.Resolve(context.Background(), "home.example.org")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("198.18.7.9") || ttl != 30*time.Second {
		t.Errorf("Resolve = %v, %s, %v", addrs, ttl, err)
	}
}
