// Package testutil holds helpers for tests: a root gate and throwaway
// network namespaces joined by veth pairs for those that need the kernel,
// and the way to the test material beside the checkout. Only _test.go files
// import it.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// Shared returns the path of rel in ../shared, the test material beside the
// checkout (the hub snapshot, the corpus generator), and skips the test,
// loudly, when it is not there.
func Shared(tb testing.TB, rel string) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("testutil: no caller information to find ../shared")
	}
	// file is internal/testutil/testutil.go in the checkout.
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("SKIP: %s missing (expected ../shared beside the checkout): %v", p, err)
	}
	return p
}

// RequireRoot skips the test, loudly, unless it runs as root. Kernel tests
// are real tests: as root (as in CI) they run, never skip.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("SKIPPED: this test needs root (network namespaces, nftables, BPF); run `sudo make test` to run it")
	}
}

// RandName returns prefix followed by n random hex characters, for names that
// must not collide between parallel tests or leftover runs.
func RandName(prefix string, n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)[:n]
}

// NetNS is a named network namespace that exists for one test.
type NetNS struct {
	Name string
}

// Path is the namespace's bind-mount, usable with `nsenter --net=`.
func (n *NetNS) Path() string { return "/run/netns/" + n.Name }

// NewNetNS creates a namespace with loopback up and deletes it when the test
// ends, pass or fail. Deleting it removes its links, nft tables and XDP
// attachments with it.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequireRoot(tb)
	n := &NetNS{Name: RandName("moat-t-", 8)}
	Run(tb, "ip", "netns", "add", n.Name)
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			tb.Errorf("delete netns %s: %v: %s", n.Name, err, out)
		}
	})
	n.Run(tb, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside the namespace and fails the test on error.
func (n *NetNS) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	return Run(tb, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Command returns an unstarted command that will run inside the namespace.
func (n *NetNS) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Do runs fn on a locked OS thread switched into the namespace, so netlink
// and BPF calls made by fn act inside it. The thread is discarded afterwards
// rather than switched back, so no other goroutine can inherit the namespace.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime ends the thread with the goroutine.
		h, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Veth is one end of a veth pair inside a namespace.
type Veth struct {
	NS   *NetNS
	Name string
	MAC  string
}

// VethPair links a and b with a veth pair, brings both ends up and assigns
// the given addresses (CIDR notation; IPv6 with nodad so they are usable at
// once). It returns the two ends.
func VethPair(tb testing.TB, a, b *NetNS, addrsA, addrsB []string) (Veth, Veth) {
	tb.Helper()
	base := RandName("mv", 8)
	ea, eb := Veth{NS: a, Name: base + "a"}, Veth{NS: b, Name: base + "b"}
	Run(tb, "ip", "link", "add", ea.Name, "netns", a.Name, "type", "veth", "peer", "name", eb.Name, "netns", b.Name)
	for _, e := range []struct {
		v     *Veth
		addrs []string
	}{{&ea, addrsA}, {&eb, addrsB}} {
		for _, addr := range e.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", e.v.Name}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			e.v.NS.Run(tb, args...)
		}
		e.v.NS.Run(tb, "ip", "link", "set", e.v.Name, "up")
		e.v.MAC = strings.TrimSpace(e.v.NS.Run(tb, "cat", "/sys/class/net/"+e.v.Name+"/address"))
	}
	return ea, eb
}

// Run runs a command on the host and fails the test on error.
func Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Command returns an unstarted command on the host.
func Command(name string, args ...string) *exec.Cmd {
	return exec.Command(name, args...)
}

// SeedFiles adds every file under dir in fsys to f's seed corpus, so a
// fuzz target starts from the content moat ships.
func SeedFiles(f *testing.F, fsys fs.FS, dir string) {
	f.Helper()
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
}

// ErrorLines loads each file matching glob with load and checks that the
// first line of its error starts with want[base name]; every file must
// have an expectation and every expectation a file. load also checks the
// error's type.
func ErrorLines(t *testing.T, glob string, want map[string]string, load func(t *testing.T, path string) error) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d files match %s, %d expectations", len(files), glob, len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			first, _, _ := strings.Cut(load(t, f).Error(), "\n")
			if w, ok := want[filepath.Base(f)]; !ok || !strings.HasPrefix(first, w) {
				t.Fatalf("error\n got: %s\nwant: %s...", first, w)
			}
		})
	}
}
