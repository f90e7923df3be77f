package xdp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// listenTCP accepts (and closes) connections on port in ns.
func listenTCP(t *testing.T, ns *testutil.NetNS, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatalf("listen on %d: %v", port, err)
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

// dialTCP connects from src in a to port on b's address of src's family.
func (l *lab) dialTCP(src string, port int, timeout time.Duration) error {
	s := netip.MustParseAddr(src)
	d := netip.MustParseAddr(dst4)
	if s.Is6() {
		d = netip.MustParseAddr(dst6)
	}
	return l.a.Do(func() error {
		dl := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s, 0))}
		c, err := dl.Dial("tcp", netip.AddrPortFrom(d, uint16(port)).String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func (l *lab) reaches(t *testing.T, src string, port int) {
	t.Helper()
	if err := l.dialTCP(src, port, 10*time.Second); err != nil {
		t.Errorf("%s -> port %d: %v, want a connection", src, port, err)
	}
}

// blocked asserts the SYN is dropped: the dial times out, it is neither
// refused nor answered.
func (l *lab) blocked(t *testing.T, src string, port int) {
	t.Helper()
	err := l.dialTCP(src, port, 1500*time.Millisecond)
	if err == nil {
		t.Errorf("%s -> port %d connected, want it dropped", src, port)
		return
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("%s -> port %d: %v, want a timeout (dropped SYN)", src, port, err)
	}
}

// TestPortsWithXDP runs moat's two kernel backends side by side, as the
// daemon does with XDP enabled: a port-scoped ban (held by nftables only)
// closes port 25 and leaves 80 open; a full ban, which XDP drops before
// nftables sees anything, leaves the never_block port 22 open.
func TestPortsWithXDP(t *testing.T) {
	testutil.RequireRoot(t)
	const scoped, full, other = "198.18.0.20", "198.18.0.21", "198.18.0.22"
	l := newLab(t, scoped, full, other, "2001:db8::21")
	for _, port := range []int{22, 25, 80} {
		listenTCP(t, l.b, port)
	}
	never := []model.PortProto{{Proto: model.ProtoTCP, Port: 22}}
	var xb *Backend
	if err := l.b.Do(func() error {
		var err error
		xb, err = Open(context.Background(), Config{PinDir: testPinDir(t), Interfaces: []string{l.vb.Name}, NeverBlock: never})
		return err
	}); err != nil {
		t.Fatalf("open xdp: %v", err)
	}
	defer xb.Close()
	fd, err := os.Open(l.b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	nb, err := nft.Open(context.Background(), nft.Config{NetNS: int(fd.Fd()), NeverBlock: never})
	if err != nil {
		t.Fatalf("open nft: %v", err)
	}
	defer nb.Close()

	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	fullBans := enforce.Diff{Set: []enforce.Entry{single(full, exp), single("2001:db8::21", time.Time{})}}
	for _, be := range []enforce.Backend{xb, nb} {
		if err := be.Apply(ctx, fullBans); err != nil {
			t.Fatalf("%s: %v", be.Name(), err)
		}
	}
	if err := nb.ApplyPorts(ctx, enforce.PortDiff{Set: []enforce.PortEntry{
		{Prefix: netip.MustParsePrefix(scoped + "/32"), Proto: model.ProtoTCP, Port: 25, Expiry: exp},
	}}); err != nil {
		t.Fatal(err)
	}

	before := counters(t, xb)
	l.reaches(t, scoped, 80)
	l.blocked(t, scoped, 25)
	l.reaches(t, scoped, 22)
	l.reaches(t, full, 22)
	l.reaches(t, "2001:db8::21", 22)
	l.blocked(t, full, 80)
	l.blocked(t, full, 25)
	l.blocked(t, "2001:db8::21", 80)
	l.reaches(t, other, 25)
	// The full ban's drops happened in XDP, not behind it in nftables.
	if got := counters(t, xb).DroppedPackets - before.DroppedPackets; got == 0 {
		t.Error("XDP dropped nothing from the fully banned sources")
	}
	if c, err := nb.Counters(ctx); err != nil {
		t.Fatal(err)
	} else if c["ban4"].Packets != 0 || c["ban4_port"].Packets == 0 {
		t.Errorf("nft counters %v: want the port-scoped drops there and no full-ban drop past XDP", c)
	}
}
