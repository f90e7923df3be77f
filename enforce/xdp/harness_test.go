package xdp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// lab is two namespaces joined by a veth pair: packets go from the sender
// (a) to the XDP side (b), where a UDP sink counts what gets through.
type lab struct {
	a, b   *testutil.NetNS
	va, vb testutil.Veth
	sink   *sink
}

const (
	dst4 = "198.18.0.1"
	dst6 = "2001:db8::1"
)

func newLab(t testing.TB, srcs ...string) *lab {
	t.Helper()
	l := &lab{a: testutil.NewNetNS(t), b: testutil.NewNetNS(t)}
	var addrsA []string
	for _, s := range srcs {
		bits := "/32"
		if strings.Contains(s, ":") {
			bits = "/128"
		}
		addrsA = append(addrsA, s+bits)
	}
	addrsA = append(addrsA, "198.18.0.2/24", "2001:db8::2/64")
	l.va, l.vb = testutil.VethPair(t, l.a, l.b, addrsA, []string{dst4 + "/24", dst6 + "/64"})
	// Static neighbours both ways: neighbour discovery sent from a banned
	// source would itself be dropped and skew the counters.
	l.a.Run(t, "ip", "neigh", "replace", dst4, "lladdr", l.vb.MAC, "dev", l.va.Name, "nud", "permanent")
	l.a.Run(t, "ip", "neigh", "replace", dst6, "lladdr", l.vb.MAC, "dev", l.va.Name, "nud", "permanent")
	for _, s := range append(srcs, "198.18.0.2", "2001:db8::2") {
		l.b.Run(t, "ip", "neigh", "replace", s, "lladdr", l.va.MAC, "dev", l.vb.Name, "nud", "permanent")
	}
	l.b.Run(t, "ip", "route", "add", "198.18.0.0/15", "dev", l.vb.Name)
	l.b.Run(t, "ip", "-6", "route", "add", "2001:db8::/32", "dev", l.vb.Name)
	l.sink = newSink(t, l.b)
	waitUp(t, l.a, l.va.Name)
	waitUp(t, l.b, l.vb.Name)
	return l
}

// waitUp waits until a fresh veth end has carrier; packets sent before
// that are lost and trafgen fails outright.
func waitUp(tb testing.TB, ns *testutil.NetNS, dev string) {
	tb.Helper()
	for range 200 {
		if out, err := ns.Command("cat", "/sys/class/net/"+dev+"/operstate").Output(); err == nil && string(out) == "up\n" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("%s did not come up", dev)
}

// open opens the backend inside b, where the interface lives.
func (l *lab) open(t testing.TB, pinDir string) *Backend {
	t.Helper()
	var be *Backend
	err := l.b.Do(func() error {
		var err error
		be, err = Open(context.Background(), Config{PinDir: pinDir, Interfaces: []string{l.vb.Name}})
		return err
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return be
}

// send sends n UDP datagrams from src to the matching-family address of b.
func (l *lab) send(t testing.TB, src string, n int) {
	t.Helper()
	s := netip.MustParseAddr(src)
	d := netip.MustParseAddr(dst4)
	if s.Is6() {
		d = netip.MustParseAddr(dst6)
	}
	err := l.a.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(d, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		payload := make([]byte, 18)
		for i := range n {
			if _, err := c.Write(payload); err != nil {
				return fmt.Errorf("packet %d: %w", i, err)
			}
			// Stay well below the veth ring (256) so the sender never
			// drops what XDP should see.
			if i%32 == 31 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send from %s: %v", src, err)
	}
}

// sink counts datagrams received in a namespace, per source address.
type sink struct {
	mu  sync.Mutex
	got map[netip.Addr]int
}

func newSink(t testing.TB, ns *testutil.NetNS) *sink {
	t.Helper()
	s := &sink{got: map[netip.Addr]int{}}
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: 9})
		return err
	})
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got[from.Addr().Unmap()]++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sink) count(src string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[netip.MustParseAddr(src)]
}

// waitFor polls cond until it holds or 3 s pass; packets cross the veth in
// softirq context, after the sender's write returns.
func waitFor(cond func() (bool, error)) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testPinDir returns a fresh pin directory under /sys/fs/bpf and removes
// everything in it when the test ends.
func testPinDir(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := "/sys/fs/bpf/" + testutil.RandName("moat-test-", 10)
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s still exists after cleanup (stat: %v)", dir, err)
		}
	})
	return dir
}
