package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// seedStore writes n bans (plus extra) into the store a daemon will open.
func seedStore(t *testing.T, stateDir string, n int, extra ...string) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(stateDir, "moat.db"), store.Options{})
	must(t, err)
	defer st.Close()
	until := time.Now().Add(4 * time.Hour)
	ds := make([]model.Decision, 0, n+len(extra))
	// Map entries only: 100.64.0.0/10 never carries the test's traffic.
	base := netip.MustParseAddr("100.64.0.1").As4()
	for i := 0; i < n; i++ {
		a := base
		a[1] += byte(i >> 16)
		a[2] = byte(i >> 8)
		a[3] = byte(i)
		ds = append(ds, model.Decision{Value: netip.PrefixFrom(netip.AddrFrom4(a), 32), Type: "ban", Origin: model.OriginList, Scenario: "seed", Until: until})
	}
	for _, e := range extra {
		ds = append(ds, model.Decision{Value: netip.MustParsePrefix(e), Type: "ban", Origin: model.OriginCLI, Scenario: "seed", Until: until})
	}
	must(t, st.InsertDecisions(context.Background(), ds))
}

// startDaemonIn runs moat in ns with nsenter, which keeps the host's mount
// namespace so pins under the test's bpffs directory outlive the process.
func startDaemonIn(t *testing.T, ns *testutil.NetNS, cfgPath string) *daemonProc {
	t.Helper()
	return startDaemonCmd(t, testutil.Command("nsenter", "--net="+ns.Path(), os.Args[0], "run", "--config", cfgPath, "--log-level", "debug"))
}

// startDaemonCmd starts cmd, a moat run, and waits until it runs. The
// daemon is killed when the test ends, and its output logged if the test
// failed.
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	d := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr, cmd.Stdout = d.stderr, d.stderr
	must(t, cmd.Start())
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.stderr.String())
		}
	})
	waitFor(t, 120*time.Second, "the daemon to start", func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited at start: %v\n%s", err, d.stderr.String())
		default:
		}
		return strings.Contains(d.stderr.String(), "moat running")
	})
	return d
}

func TestRestartKeepsBansWithoutGap(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: loads 100k bans into the kernel")
	}
	const seeded = 100_000
	victim, attacker := testutil.NewNetNS(t), testutil.NewNetNS(t)
	_, vv := testutil.VethPair(t, attacker, victim, []string{"198.18.1.2/24", "198.18.1.3/24"}, []string{"198.18.1.1/24"})

	pinDir := filepath.Join("/sys/fs/bpf", testutil.RandName("moat-t-", 8))
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	h := newE2EHost(t, victim, nil)
	cfg, err := os.ReadFile(h.cfgPath)
	must(t, err)
	cfg = []byte(strings.Replace(string(cfg), "enforce:\n", fmt.Sprintf("enforce:\n  xdp:\n    enabled: true\n    interfaces: [%s]\n    pin_dir: %s\n", vv.Name, pinDir), 1))
	must(t, os.WriteFile(h.cfgPath, cfg, 0o644))
	seedStore(t, filepath.Join(h.dir, "state"), seeded, "198.18.1.2/32")

	// Count what reaches the victim from the banned and the free source.
	var fromBanned, fromFree atomic.Int64
	var conn *net.UDPConn
	must(t, victim.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.18.1.1"), Port: 9999})
		return err
	}))
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			switch from.IP.String() {
			case "198.18.1.2":
				fromBanned.Add(1)
			case "198.18.1.3":
				fromFree.Add(1)
			}
		}
	}()

	d := startDaemonIn(t, victim, h.cfgPath)
	if n := strings.Count(nftSet(t, victim, "ban4"), "timeout"); n < seeded {
		t.Fatalf("after start the nft set holds %d timed elements, want at least %d", n, seeded)
	}

	// Traffic from both sources for the whole restart.
	ctx, stopSending := context.WithCancel(context.Background())
	defer stopSending()
	var sent atomic.Int64
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- attacker.Do(func() error {
			src := map[string]*net.UDPConn{}
			for _, ip := range []string{"198.18.1.2", "198.18.1.3"} {
				c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)}, &net.UDPAddr{IP: net.ParseIP("198.18.1.1"), Port: 9999})
				if err != nil {
					return err
				}
				defer c.Close()
				src[ip] = c
			}
			for i := 0; ctx.Err() == nil; i++ {
				for _, c := range src {
					c.Write([]byte(strconv.Itoa(i)))
				}
				sent.Add(1)
				time.Sleep(time.Millisecond)
			}
			return nil
		})
	}()
	waitFor(t, 5*time.Second, "packets from the free source", func() bool { return fromFree.Load() > 50 })

	// A ban added with the CLI right before the daemon dies; once the
	// command returned, it must survive in the store even if the kernel
	// loses it (removed by hand below).
	moatIn(t, victim, "decisions", "add", "--ip", "198.18.1.4", "--reason", "restart test", "--config", h.cfgPath)

	// kill -9: nothing runs, the kernel keeps dropping.
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	victim.Run(t, "nft", "delete", "element", "inet", "moat", "ban4", "{ 198.18.1.4 }")
	before := fromFree.Load()
	time.Sleep(500 * time.Millisecond)
	if fromFree.Load() <= before {
		t.Fatal("the free source's packets stopped arriving while no daemon ran")
	}
	elemsDead := strings.Count(nftSet(t, victim, "ban4"), "timeout")

	// Restart: the daemon adopts what the kernel holds.
	d2 := startDaemonIn(t, victim, h.cfgPath)
	if out := d2.stderr.String(); !strings.Contains(out, "moat running") {
		t.Fatalf("restart failed:\n%s", out)
	}
	set := nftSet(t, victim, "ban4")
	elemsAfter := strings.Count(set, "timeout")
	if !strings.Contains(set, "198.18.1.4") {
		t.Fatal("the ban acknowledged by moat decisions add before kill -9 is not enforced after the restart")
	}
	time.Sleep(300 * time.Millisecond)
	stopSending()
	must(t, <-sendDone)
	time.Sleep(100 * time.Millisecond)

	if n := fromBanned.Load(); n != 0 {
		t.Fatalf("%d packets from the banned source got through across the kill and restart (of %d sent)", n, sent.Load())
	}
	if fromFree.Load() < sent.Load()/2 {
		t.Fatalf("only %d of %d packets from the free source arrived", fromFree.Load(), sent.Load())
	}
	if elemsDead < seeded || elemsAfter != elemsDead+1 {
		t.Fatalf("set sizes: %d while dead, %d after restart; want one more (the CLI ban restored), at least %d (no flush, no duplicate)", elemsDead, elemsAfter, seeded)
	}
	if !strings.Contains(d2.stderr.String(), "xdp") {
		t.Fatalf("the restarted daemon did not run the XDP backend:\n%s", d2.stderr.String())
	}
	t.Logf("%d packets sent per source across kill -9 and restart: %d from the banned source arrived, %d from the free one; %d nft elements before and after", sent.Load(), fromBanned.Load(), fromFree.Load(), elemsAfter)

	// Adding still works after the restart.
	h.appendLines(t, repeatLine("Failed password for root from 198.18.1.3 port 2222 ssh2", 8)...)
	waitFor(t, 10*time.Second, "the new ban after restart", func() bool {
		return strings.Contains(nftSet(t, victim, "ban4"), "198.18.1.3")
	})
	if err := d2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
	cmd := testutil.Command("nsenter", "--net="+victim.Path(), os.Args[0], "cleanup", "--config", h.cfgPath)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if _, err := os.Stat(pinDir); err == nil {
		if entries, _ := os.ReadDir(pinDir); len(entries) > 0 {
			t.Fatalf("pins left after cleanup: %v", entries)
		}
	}
}

func repeatLine(l string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = l
	}
	return out
}
