package packaging_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// egressRules record, in the test's network namespace, every attempt to
// reach anything beyond this host. The namespace gets a veth pair (both
// ends inside it; the dummy link type is not built into every kernel)
// holding a documentation address and the default routes (IPv4 and
// IPv6): without a route connect(2) fails with ENETUNREACH before any
// packet exists and no hook would see it, while with one every attempt
// becomes a first packet (TCP SYN, UDP datagram, ICMP) that the output
// hook sees before neighbour resolution, which nothing on the peer end
// answers, so nothing leaves the namespace. Counted, and the destination
// kept in a set:
//   - every new connection whose packet leaves by an interface other than
//     loopback (ct state new: the first packet of a TCP or UDP flow, or an
//     ICMP echo);
//   - every DNS query, even to a resolver on loopback (a name lookup is
//     the first step of phoning home, and resolv.conf may name
//     127.0.0.53).
//
// The table's name does not start with "moat": the install test finds
// moat's own table by the text "table inet moat".
const egressRules = `
table inet egress_watch {
	set dst4 { type ipv4_addr; flags dynamic; size 4096; }
	set dst6 { type ipv6_addr; flags dynamic; size 4096; }
	chain out {
		type filter hook output priority 0; policy accept;
		meta oif != "lo" ct state new meta nfproto ipv4 add @dst4 { ip daddr } counter
		meta oif != "lo" ct state new meta nfproto ipv6 add @dst6 { ip6 daddr } counter
		meta oif "lo" meta l4proto { tcp, udp } th dport 53 counter
	}
}
`

// egressWatch installs egressRules in ns and returns attempts, which
// reports the packets counted so far and the destinations recorded.
func egressWatch(t *testing.T, ns *testutil.NetNS) (attempts func() (n int, detail string)) {
	t.Helper()
	ns.Run(t, "ip", "link", "add", "moat-egress", "type", "veth", "peer", "name", "moat-egress-p")
	ns.Run(t, "ip", "link", "set", "moat-egress", "up")
	ns.Run(t, "ip", "link", "set", "moat-egress-p", "up")
	ns.Run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "moat-egress")
	ns.Run(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "moat-egress", "nodad")
	ns.Run(t, "ip", "route", "add", "default", "dev", "moat-egress")
	ns.Run(t, "ip", "-6", "route", "add", "default", "dev", "moat-egress")
	rules := filepath.Join(t.TempDir(), "egress.nft")
	if err := os.WriteFile(rules, []byte(egressRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "-f", rules)
	// The recorder must record: a probe connection to a documentation
	// address is counted, then the table is made again from scratch, so
	// a broken rule can never pass for "no attempts".
	_ = ns.Do(func() error {
		// It cannot connect: nothing answers on the peer end.
		c, err := net.DialTimeout("tcp", "198.51.100.7:443", 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return nil
	})
	count := func() (int, string) {
		out := ns.Run(t, "nft", "list", "table", "inet", "egress_watch")
		n := 0
		for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1) {
			v, err := strconv.Atoi(m[1])
			if err != nil {
				t.Fatal(err)
			}
			n += v
		}
		return n, out
	}
	if n, out := count(); n == 0 {
		t.Fatalf("the egress recorder did not count a probe connection to 198.51.100.7:\n%s", out)
	}
	ns.Run(t, "nft", "delete", "table", "inet", "egress_watch")
	ns.Run(t, "nft", "-f", rules)
	if n, out := count(); n != 0 {
		t.Fatalf("egress counters not reset:\n%s", out)
	}
	return count
}

// checkNoEgress fails the test when anything was recorded during what.
func checkNoEgress(t *testing.T, attempts func() (int, string), what string) {
	t.Helper()
	n, detail := attempts()
	if n != 0 {
		t.Errorf("%s: %d outgoing connection attempts recorded, want none:\n%s", what, n, detail)
		return
	}
	t.Logf("%s: 0 outgoing connection attempts", what)
}

// runDefaultDaemon runs the installed `moat run` in the chroot at root,
// in ns, on the package's default configuration (/etc/moat/moat.yaml as
// installed), for the given time, and stops it with SIGTERM as systemd
// does. The daemon must still be running when stopped and exit cleanly.
func runDefaultDaemon(t *testing.T, ns *testutil.NetNS, root string, env []string, d time.Duration) {
	t.Helper()
	// The daemon reads /proc (its own status, the host's addresses for
	// the allowlist); the chroot has none until the test mounts one.
	proc := filepath.Join(root, "proc")
	run(t, filepath.Dir(root), nil, "mount", "-t", "proc", "proc", proc)
	defer func() {
		if out, err := exec.Command("umount", "-l", proc).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", proc, err, out)
		}
	}()
	if err := os.MkdirAll(filepath.Join(root, "run/moat"), 0o750); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("chroot", root, "/usr/bin/moat", "run")
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("moat run exited within %s: %v\n%s", d, err, out.String())
	case <-time.After(d):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("moat run on SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("moat run did not stop on SIGTERM:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "moat running") {
		t.Errorf("moat run never said it was running:\n%s", out.String())
	}
	t.Logf("moat run on the default configuration for %s:\n%s", d, out.String())
}
