package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// e2eHost is a namespace with moat's configuration and log file.
type e2eHost struct {
	ns      *testutil.NetNS
	dir     string
	cfgPath string
	logPath string
}

func newE2EHost(t *testing.T, ns *testutil.NetNS, allowlist []string) *e2eHost {
	t.Helper()
	h := &e2eHost{ns: ns, dir: t.TempDir()}
	h.cfgPath = filepath.Join(h.dir, "moat.yaml")
	h.logPath = filepath.Join(h.dir, "auth.log")
	root := repoRoot(t)
	acquis := filepath.Join(h.dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(h.logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte(fmt.Sprintf(
		"source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", h.logPath)), 0o644))
	cfg := daemonConfig(h.dir, root, acquis) + "allowlist: [" + strings.Join(allowlist, ", ") + "]\n"
	must(t, os.WriteFile(h.cfgPath, []byte(cfg), 0o644))
	return h
}

// appendLines writes sshd lines as syslog would, stamped now.
func (h *e2eHost) appendLines(t *testing.T, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(h.logPath, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	var b strings.Builder
	for i, l := range lines {
		fmt.Fprintf(&b, "%s victim sshd[%d]: %s\n", time.Now().Format(time.Stamp), 4000+i, l)
	}
	_, err = f.WriteString(b.String())
	must(t, err)
}

// daemon is a moat run process inside a namespace.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startDaemon(t *testing.T, h *e2eHost) *daemonProc {
	t.Helper()
	return startDaemonIn(t, h.ns, h.cfgPath)
}

func (d *daemonProc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	must(t, d.cmd.Process.Signal(sig))
	select {
	case err := <-d.done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not stop within 15s after %v", sig)
		return nil
	}
}

func TestEndToEndBanInNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	victim, attacker, innocent := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.VethPair(t, attacker, victim, []string{"198.18.1.2/24", "2001:db8:1::2/64"}, []string{"198.18.1.1/24", "2001:db8:1::1/64"})
	testutil.VethPair(t, innocent, victim, []string{"198.18.2.2/24", "2001:db8:2::2/64"}, []string{"198.18.2.1/24", "2001:db8:2::1/64"})
	attacker.Run(t, "ip", "route", "add", "default", "via", "198.18.1.1")
	innocent.Run(t, "ip", "route", "add", "default", "via", "198.18.2.1")

	host := newE2EHost(t, victim, []string{"198.18.3.0/24"})
	port := listenTCP(t, victim)
	d := startDaemon(t, host)

	// Before any ban both clients get through.
	for _, c := range []struct {
		ns   *testutil.NetNS
		addr string
	}{{attacker, "198.18.1.1"}, {attacker, "2001:db8:1::1"}, {innocent, "198.18.2.1"}} {
		// Neighbour discovery on fresh links can take a moment.
		waitFor(t, 5*time.Second, "a connection to "+c.addr+" before any ban", func() bool {
			return dialTCP(c.ns, c.addr, port) == nil
		})
	}

	var lines []string
	for i := 0; i < 8; i++ {
		lines = append(lines,
			fmt.Sprintf("Failed password for invalid user admin%d from 198.18.1.2 port %d ssh2", i, 40000+i),
			fmt.Sprintf("Failed password for root from 2001:db8:1::2 port %d ssh2", 41000+i),
			// Never to be banned: allowlisted, loopback, the victim's own address.
			fmt.Sprintf("Failed password for root from 198.18.3.9 port %d ssh2", 42000+i),
			fmt.Sprintf("Failed password for root from 127.0.0.1 port %d ssh2", 43000+i),
			fmt.Sprintf("Failed password for root from 198.18.2.1 port %d ssh2", 44000+i),
		)
	}
	host.appendLines(t, lines...)

	waitFor(t, 10*time.Second, "the attacker's IPv4 and IPv6 bans", func() bool {
		return strings.Contains(nftSet(t, victim, "ban4"), "198.18.1.2") &&
			strings.Contains(nftSet(t, victim, "ban6"), "2001:db8:1::2")
	})
	if err := dialTCP(attacker, "198.18.1.1", port); err == nil {
		t.Fatal("the banned attacker still connects over IPv4")
	}
	if err := dialTCP(attacker, "2001:db8:1::1", port); err == nil {
		t.Fatal("the banned attacker still connects over IPv6")
	}
	if err := dialTCP(innocent, "198.18.2.1", port); err != nil {
		t.Fatalf("the innocent neighbour is blocked: %v", err)
	}
	set := nftSet(t, victim, "ban4")
	for _, never := range []string{"198.18.3.9", "127.0.0.1", "198.18.2.1"} {
		if strings.Contains(set, never) {
			t.Errorf("moat banned %s, which it must never ban:\n%s", never, set)
		}
	}
	if !strings.Contains(d.stderr.String(), "refused") {
		t.Errorf("the refused bans were not logged")
	}

	checkAdminAndMetrics(t, victim, host)

	// Ctrl-C: a clean exit that leaves the bans in place.
	if err := d.stop(t, syscall.SIGINT); err != nil {
		t.Fatalf("daemon exit after SIGINT: %v\n%s", err, d.stderr.String())
	}
	if !strings.Contains(nftSet(t, victim, "ban4"), "198.18.1.2") {
		t.Fatal("the ban did not survive the daemon's exit")
	}
	if err := dialTCP(attacker, "198.18.1.1", port); err == nil {
		t.Fatal("the attacker connects once the daemon stopped")
	}

	// moat cleanup removes what moat made, and only that.
	cmd := victim.Command(os.Args[0], "cleanup", "--config", host.cfgPath)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("moat cleanup: %v\n%s", err, out)
	}
	if out := victim.Run(t, "nft", "list", "tables"); strings.Contains(out, "moat") {
		t.Fatalf("table inet moat survives cleanup:\n%s", out)
	}
	if err := dialTCP(attacker, "198.18.1.1", port); err != nil {
		t.Fatalf("after cleanup the attacker is still blocked: %v", err)
	}
}

// checkAdminAndMetrics exercises the running daemon: the CLI over the
// socket, the metrics after the bans, and the verify pass after someone
// deleted a ban by hand.
func checkAdminAndMetrics(t *testing.T, victim *testutil.NetNS, host *e2eHost) {
	t.Helper()
	out := moatIn(t, victim, "decisions", "list", "-o", "json", "--config", host.cfgPath)
	if !strings.Contains(out, "198.18.1.2") || !strings.Contains(out, "2001:db8:1::2") {
		t.Fatalf("moat decisions list does not show the bans:\n%s", out)
	}

	metrics := scrape(t, victim, "http://127.0.0.1:9641/metrics")
	for _, want := range []string{
		`moat_detection_to_kernel_seconds_count 3`,
		`moat_decisions_total{origin="local",scenario="moat/ssh-bf"} 2`,
		"moat_store_errors_total 0",
		"moat_decisions_pending_store 0",
		`moat_kernel_elements{backend="nftables",set="ban4"} 1`,
		`moat_kernel_elements{backend="nftables",set="ban6"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(metrics, "moat_source_lines_total") {
		t.Errorf("metrics lack the source line counters:\n%s", metrics)
	}

	// Someone deletes the ban by hand; moat verify puts it back.
	victim.Run(t, "nft", "delete", "element", "inet", "moat", "ban4", "{ 198.18.1.2 }")
	rep := moatIn(t, victim, "verify", "-o", "json", "--config", host.cfgPath)
	if !strings.Contains(rep, `"198.18.1.2/32"`) || !strings.Contains(rep, `"missing"`) {
		t.Fatalf("moat verify did not report the deleted element:\n%s", rep)
	}
	if !strings.Contains(nftSet(t, victim, "ban4"), "198.18.1.2") {
		t.Fatal("moat verify did not restore the deleted element")
	}
}
