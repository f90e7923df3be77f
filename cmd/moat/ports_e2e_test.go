package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// listenTCPPort is listenTCP on a chosen port.
func listenTCPPort(t *testing.T, ns *testutil.NetNS, port int) {
	t.Helper()
	var ln net.Listener
	must(t, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
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
}

// TestPortScopedBansInNamespaces drives the daemon as an admin would: a
// ban of port 25/tcp leaves the attacker its other ports, and with
// never_block [22/tcp] a full ban leaves it 22; with XDP too, which drops
// the fully banned address before nftables sees it.
func TestPortScopedBansInNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	for _, withXDP := range []bool{false, true} {
		t.Run(fmt.Sprintf("xdp=%v", withXDP), func(t *testing.T) {
			victim, attacker := testutil.NewNetNS(t), testutil.NewNetNS(t)
			_, vv := testutil.VethPair(t, attacker, victim, []string{"198.18.1.2/24"}, []string{"198.18.1.1/24"})
			for _, port := range []int{22, 25, 80} {
				listenTCPPort(t, victim, port)
			}
			h := newE2EHost(t, victim, nil)
			cfg, err := os.ReadFile(h.cfgPath)
			must(t, err)
			enforce := "enforce:\n  never_block: [22/tcp]\n"
			if withXDP {
				pinDir := filepath.Join("/sys/fs/bpf", testutil.RandName("moat-t-", 8))
				t.Cleanup(func() { os.RemoveAll(pinDir) })
				enforce += fmt.Sprintf("  xdp:\n    enabled: true\n    interfaces: [%s]\n    pin_dir: %s\n", vv.Name, pinDir)
			}
			must(t, os.WriteFile(h.cfgPath, []byte(strings.Replace(string(cfg), "enforce:\n", enforce, 1)), 0o644))
			startDaemon(t, h)

			reaches := func(port int) {
				t.Helper()
				waitFor(t, 10*time.Second, fmt.Sprintf("a connection to port %d", port), func() bool {
					return dialTCP(attacker, "198.18.1.1", port) == nil
				})
			}
			blocked := func(port int) {
				t.Helper()
				if err := dialTCP(attacker, "198.18.1.1", port); err == nil {
					t.Errorf("the attacker connects to port %d, want it dropped", port)
				}
			}
			for _, port := range []int{22, 25, 80} {
				reaches(port)
			}

			out := moatIn(t, victim, "decisions", "add", "--config", h.cfgPath, "--ip", "198.18.1.2", "--ports", "25", "--protocol", "tcp", "-o", "table")
			if !strings.Contains(out, "198.18.1.2 on 25/tcp") {
				t.Errorf("decisions add said %q, want it to name the ports", out)
			}
			blocked(25)
			reaches(80)
			reaches(22)
			if list := moatIn(t, victim, "decisions", "list", "--config", h.cfgPath, "-o", "table"); !strings.Contains(list, "ban on 25/tcp") {
				t.Errorf("decisions list does not show the ports:\n%s", list)
			}

			// A full ban on top: only the never_block port stays open. The
			// port-scoped ban leaves with its deletion, the full one stays.
			moatIn(t, victim, "decisions", "add", "--config", h.cfgPath, "--ip", "198.18.1.2")
			blocked(80)
			blocked(25)
			reaches(22)
			moatIn(t, victim, "decisions", "delete", "--config", h.cfgPath, "--ip", "198.18.1.2")
			if set := victim.Run(t, "nft", "list", "set", "inet", "moat", "ban4_port"); strings.Contains(set, "198.18.1.2") {
				t.Errorf("the deleted port-scoped ban is still in the kernel:\n%s", set)
			}
			reaches(80)
			reaches(25)
		})
	}
}
