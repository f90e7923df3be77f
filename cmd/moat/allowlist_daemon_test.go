package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// nameServer answers one name with an address the test moves, at a
// one-second TTL, on loopback.
type nameServer struct {
	addr string
	mu   sync.Mutex
	ip   netip.Addr
}

func startNameServer(t *testing.T, name string, ip netip.Addr) *nameServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	ns := &nameServer{addr: pc.LocalAddr().String(), ip: ip}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		ns.mu.Lock()
		if strings.EqualFold(q.Question[0].Name, dns.Fqdn(name)) && q.Question[0].Qtype == dns.TypeA {
			r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ns.ip.AsSlice()}}
		}
		ns.mu.Unlock()
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ns
}

func (ns *nameServer) move(ip netip.Addr) {
	ns.mu.Lock()
	ns.ip = ip
	ns.mu.Unlock()
}

// TestDaemonAllowlist runs the daemon (no kernel backend) with a hostname
// on a DNS server of the test's, an include directory and a utmp file of
// the test's: what they protect cannot be banned, a ban on an address that
// becomes protected is lifted, and a name that moves takes its protection
// with it.
func TestDaemonAllowlist(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "moat-allowd-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	home1, home2 := netip.MustParseAddr("198.18.40.1"), netip.MustParseAddr("198.18.40.2")
	ns := startNameServer(t, "home.example.org", home1)
	acquis, allowD := filepath.Join(dir, "acquis.d"), filepath.Join(dir, "allow.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.MkdirAll(allowD, 0o755))
	utmp := filepath.Join(dir, "utmp")
	rec := make([]byte, 384)
	binary.NativeEndian.PutUint16(rec, 7) // USER_PROCESS
	copy(rec[8:], "pts/0")
	copy(rec[44:], "alice")
	copy(rec[348:], netip.MustParseAddr("198.18.41.1").AsSlice())
	must(t, os.WriteFile(utmp, rec, 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfg := daemonConfig(dir, repoRoot(t), acquis) + "  nftables: {enabled: false}\n"
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9641", "listen: "+metricsAddr, 1)
	cfg += fmt.Sprintf(`allowlist:
  - {value: home.example.org, comment: admin at home}
allowlist_files: [%s/*.txt]
allowlist_options: {resolver: "%s", utmp: %s, file_check: 200ms}
`, allowD, ns.addr, utmp)
	cfgPath := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	d := startPlainDaemon(t, cfgPath)

	protectedBy := func(ip string) string {
		_, out, _ := runMoat(t, "", "allowlist", "check", ip, "-c", cfgPath, "-o", "raw")
		return strings.TrimSpace(out)
	}
	ban := func(ip string) int {
		code, _, _ := runMoat(t, "", "decisions", "add", "--ip", ip, "--reason", "test", "-c", cfgPath, "-o", "raw")
		return code
	}
	banned := func(ip string) bool {
		_, out, _ := runMoat(t, "", "decisions", "list", "-c", cfgPath, "-o", "raw")
		return strings.Contains(out, ip+"\n")
	}

	waitFor(t, 30*time.Second, "the hostname to protect its address", func() bool { return protectedBy("198.18.40.1") == "home.example.org" })
	if code := ban("198.18.40.1"); code == exitOK {
		t.Error("banned the address of an allowlisted hostname")
	}
	if code := ban("198.18.41.1"); code == exitOK {
		t.Error("banned the address of a live login session")
	}
	if s := httpGet(t, "http://"+metricsAddr+"/metrics"); !strings.Contains(s, "moat_allowlist_session_refused_total 1\n") {
		t.Errorf("the refusal for the session is not counted:\n%s", grepLines(s, "moat_allowlist"))
	}

	// An include line appears: the ban on its address is lifted.
	if code := ban("198.18.42.1"); code != exitOK || !banned("198.18.42.1") {
		t.Fatalf("ban of an address nothing protects: exit %d", code)
	}
	must(t, os.WriteFile(filepath.Join(allowD, "office.txt"), []byte("198.18.42.1 # office\n"), 0o644))
	waitFor(t, 30*time.Second, "the ban on a newly included address to be lifted", func() bool { return !banned("198.18.42.1") })

	// The name moves: its new address is protected, the old one is not.
	ns.move(home2)
	waitFor(t, 30*time.Second, "the new address of the name to be protected", func() bool { return protectedBy(home2.String()) == "home.example.org" })
	if got := protectedBy(home1.String()); got != "" {
		t.Errorf("the old address is still protected by %q", got)
	}
	if code := ban(home1.String()); code != exitOK {
		t.Errorf("ban of the name's old address: exit %d", code)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	if log := d.stderr.String(); !strings.Contains(log, "ban lifted: the address is allowlisted") || !strings.Contains(log, "login session") {
		t.Errorf("the daemon did not log the lifted ban and the session refusal:\n%s", grepLines(log, "allowlist"))
	}
}
