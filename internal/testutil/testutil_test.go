package testutil

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVethPairCarriesTraffic(t *testing.T) {
	a, b := NewNetNS(t), NewNetNS(t)
	VethPair(t, a, b, []string{"198.18.0.1/24", "2001:db8::1/64"}, []string{"198.18.0.2/24", "2001:db8::2/64"})
	var got string
	err := b.Do(func() error {
		ln, err := net.Listen("tcp", "198.18.0.2:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("moat\n"))
				c.Close()
			}
		}()
		return a.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("198.18.0.2", strconv.Itoa(port)), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			got = strings.TrimSpace(string(buf[:n]))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "moat" {
		t.Fatalf("read %q over the veth pair, want %q", got, "moat")
	}
}
