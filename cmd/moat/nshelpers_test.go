package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// moatIn runs a moat subcommand inside ns and returns its output.
func moatIn(t *testing.T, ns *testutil.NetNS, args ...string) string {
	t.Helper()
	cmd := ns.Command(append([]string{os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("moat %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// scrape fetches url from inside ns (net/http would dial from a goroutine
// outside the namespace).
func scrape(t *testing.T, ns *testutil.NetNS, url string) string {
	t.Helper()
	return ns.Run(t, "curl", "-sf", "--max-time", "5", url)
}

func nftSet(t *testing.T, ns *testutil.NetNS, set string) string {
	t.Helper()
	out, err := ns.Command("nft", "list", "set", "inet", "moat", set).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// listenTCP accepts connections on port 0 of every address in ns and
// returns the port.
func listenTCP(t *testing.T, ns *testutil.NetNS) int {
	t.Helper()
	var ln net.Listener
	must(t, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "[::]:0")
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// dialTCP connects from ns and reads the listener's greeting.
func dialTCP(ns *testutil.NetNS, addr string, port int) error {
	return ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 3)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		return nil
	})
}
