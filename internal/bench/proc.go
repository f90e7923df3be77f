package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// usage is what one child process cost: wall time, CPU time and the peak
// resident set, from wait4's rusage.
type usage struct {
	Wall   time.Duration
	CPU    time.Duration
	MaxRSS int64 // bytes
}

// runMeasured runs cmd to its end and returns its cost. Its stdout goes
// to out when out is not nil; stderr is kept for the error.
//
// The peak RSS is the child's VmHWM, sampled every 10 ms while it runs,
// not wait4's ru_maxrss: exec(2) carries the peak of the process it
// replaces into ru_maxrss, and Go starts a child as a vfork of this
// process, so ru_maxrss is never below this driver's own peak (hundreds of
// MiB after a 10M-line replay's output). ru_maxrss stands in only for a
// child too short to be sampled.
func runMeasured(cmd *exec.Cmd, out *bytes.Buffer) (usage, error) {
	var errBuf bytes.Buffer
	if out != nil {
		cmd.Stdout = out
	}
	cmd.Stderr = &errBuf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, err
	}
	stop, hwm := make(chan struct{}), make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, vmHWM(cmd.Process.Pid))
			select {
			case <-stop:
				hwm <- peak
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	u := usage{Wall: time.Since(start), MaxRSS: <-hwm}
	if ps := cmd.ProcessState; ps != nil {
		u.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && u.MaxRSS == 0 {
			u.MaxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	if err != nil {
		return u, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(errBuf.String(), 2000))
	}
	return u, nil
}

// run runs a command and returns its combined output, failing with it.
func run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// netNS is a named network namespace the suite created and deletes.
type netNS struct{ name string }

func newNetNS(ctx context.Context, prefix string) (*netNS, error) {
	n := &netNS{name: fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e6)}
	if _, err := run(ctx, "ip", "netns", "add", n.name); err != nil {
		return nil, err
	}
	if _, err := n.run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		n.del()
		return nil, err
	}
	return n, nil
}

func (n *netNS) path() string { return "/run/netns/" + n.name }

// del deletes the namespace with its links, nft tables and XDP programs.
func (n *netNS) del() { _ = exec.Command("ip", "netns", "del", n.name).Run() }

func (n *netNS) run(ctx context.Context, args ...string) (string, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", n.name}, args...)...)
}

// do runs fn on a locked OS thread inside the namespace; the thread is
// dropped afterwards, never switched back. Sockets fn opens stay in the
// namespace for their lifetime, whichever thread uses them later.
func (n *netNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(n.name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// vethPair links a and b with veth ends named an and bn, up, with the
// given addresses (CIDR).
func vethPair(ctx context.Context, a, b *netNS, an, bn string, addrA, addrB []string) error {
	if _, err := run(ctx, "ip", "link", "add", an, "netns", a.name, "type", "veth", "peer", "name", bn, "netns", b.name); err != nil {
		return err
	}
	for _, e := range []struct {
		ns    *netNS
		dev   string
		addrs []string
	}{{a, an, addrA}, {b, bn, addrB}} {
		var batch strings.Builder
		for _, addr := range e.addrs {
			fmt.Fprintf(&batch, "addr add %s dev %s\n", addr, e.dev)
		}
		fmt.Fprintf(&batch, "link set %s up\n", e.dev)
		cmd := exec.CommandContext(ctx, "ip", "-n", e.ns.name, "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip -batch in %s: %w: %s", e.ns.name, err, out)
		}
	}
	return nil
}

// vmHWM is the peak resident set of a running process (bytes), 0 when it
// cannot be read (gone, or not yet exec'd).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
