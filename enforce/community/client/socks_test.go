package client

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
)

// socks5 is a minimal SOCKS5 server (no authentication, CONNECT only)
// counting the connections it relays.
func socks5(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relay(c, &n)
		}
	}()
	return ln.Addr().String(), &n
}

func relay(c net.Conn, n *atomic.Int64) {
	defer c.Close()
	buf := make([]byte, 262)
	// Greeting: version, methods; answer "no authentication".
	if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 {
		return
	}
	if _, err := io.ReadFull(c, buf[:buf[1]]); err != nil {
		return
	}
	c.Write([]byte{5, 0})
	// Request: version, CONNECT, reserved, address type.
	if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 {
		return
	}
	var host string
	switch buf[3] {
	case 1:
		io.ReadFull(c, buf[:4])
		host = net.IP(buf[:4]).String()
	case 3:
		io.ReadFull(c, buf[:1])
		l := int(buf[0])
		io.ReadFull(c, buf[:l])
		host = string(buf[:l])
	default:
		return
	}
	io.ReadFull(c, buf[:2])
	port := binary.BigEndian.Uint16(buf[:2])
	up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		c.Write([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	n.Add(1)
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	go io.Copy(up, c)
	io.Copy(c, up)
}

// socks5:// proxies work through net/http's own SOCKS5 support, so no
// further dependency is needed.
func TestSOCKS5Proxy(t *testing.T) {
	c := startServer(t, "")
	addr, relayed := socks5(t)
	hc, err := NewHTTPClient("socks5://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Register(context.Background(), hc, c.url, token, []byte("socks"), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Status(context.Background(), hc, dir); err != nil {
		t.Fatal(err)
	}
	if relayed.Load() == 0 {
		t.Fatal("nothing went through the SOCKS5 proxy")
	}
}
