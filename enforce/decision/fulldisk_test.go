package decision

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// mountTmpfs mounts a tmpfs of the given size (mount's size= syntax) on a
// fresh directory and unmounts it when the test ends, pass or fail; it
// returns the directory. Cleanups registered later run earlier, so files
// the test opens on it are closed before the unmount.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.Run(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "moat-test", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// Something still holds a file (a test failed half way):
			// detach it anyway, the mount must not outlive the test.
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("unmount %s: %v: %s; lazy: %v: %s", dir, err, out, err2, out2)
			}
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	return path
}

// liveDaemon is the daemon's enforcement side on real pieces: the store,
// the nftables backend, the reconciler loading the store at start, the
// service and the dispatcher. stop shuts it down as the daemon does.
type liveDaemon struct {
	st   *store.Store
	b    *nft.Backend
	r    *enforce.Reconciler
	svc  *Service
	d    *Dispatcher
	in   chan Batch
	stop func()

	mu       sync.Mutex
	storeErr error // the last failed store attempt
}

func (l *liveDaemon) lastStoreErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.storeErr
}

func startLive(t *testing.T, path string, ns *testutil.NetNS) *liveDaemon {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nsf, err := os.Open(ns.Path())
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	b, err := nft.Open(ctx, nft.Config{NetNS: int(nsf.Fd())})
	nsf.Close()
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	r := enforce.NewReconciler(enforce.ReconcilerConfig{Load: func(ctx context.Context, load func([]model.Decision) error) error {
		return st.ActivePages(ctx, time.Now(), 0, load)
	}}, b)
	rctx, cancel := context.WithCancel(ctx)
	rdone, pdone := make(chan error, 1), make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	l := &liveDaemon{st: st, b: b, r: r, in: make(chan Batch)}
	var once bool
	l.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if l.d != nil {
			<-pdone
		}
		<-rdone
		b.Close()
		st.Close()
	}
	t.Cleanup(l.stop)
	l.svc, err = New(st, mustProfiles(t), r)
	if err != nil {
		t.Fatal(err)
	}
	// A short backoff keeps the test quick; the retry is the same.
	l.d = NewDispatcher(l.svc, DispatcherConfig{RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		OnError: func(_ model.Alert, err error) {
			l.mu.Lock()
			l.storeErr = err
			l.mu.Unlock()
		}})
	go func() { pdone <- l.d.Run(rctx, l.in) }()
	select {
	case <-r.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the reconciler did not load the store")
	}
	return l
}

// kernel returns the prefixes the nftables sets hold.
func (l *liveDaemon) kernel(t *testing.T) map[netip.Prefix]bool {
	t.Helper()
	var held []enforce.Entry
	err := l.r.Do(context.Background(), func() (err error) {
		held, err = l.b.List(context.Background())
		return err
	})
	if err != nil {
		t.Fatalf("list the nft sets: %v", err)
	}
	out := map[netip.Prefix]bool{}
	for _, e := range held {
		out[e.Prefix] = true
	}
	return out
}

// stored returns the values among want with an active stored decision.
func (l *liveDaemon) stored(t *testing.T, want []netip.Prefix) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range want {
		recs, err := l.svc.List(context.Background(), store.Filter{Value: model.ValueString(p)})
		if err != nil {
			t.Fatalf("list %s: %v", p, err)
		}
		if len(recs) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// TestFullDiskBansStoredOnceSpaceReturns: with the store's disk full, a
// detected attacker is banned in the kernel at once, the store write fails
// and is counted and retried, the log line stays unacknowledged; once
// space returns the ban is stored and the line acknowledged, and a restart
// keeps the ban in the kernel and the store.
func TestFullDiskBansStoredOnceSpaceReturns(t *testing.T) {
	ns := testutil.NewNetNS(t)
	dir := mountTmpfs(t, "4m")
	path := filepath.Join(dir, store.FileName)
	l := startLive(t, path, ns)

	filler := fillDisk(t, dir)
	const n = 8
	var ips []netip.Prefix
	var ack acks
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 9, byte(i + 1)}), 32)
		ips = append(ips, p)
		l.in <- Batch{Alerts: []model.Alert{alert(p.Addr().String())}, Ack: ack.ack(i)}
	}

	waitUntil(t, "the bans in the kernel", func() bool {
		held := l.kernel(t)
		for _, p := range ips {
			if !held[p] {
				return false
			}
		}
		return true
	})
	// Two failures each: the writes are retried, and fail while the disk
	// stays full.
	waitUntil(t, "failed store writes retried", func() bool {
		s := l.d.Stats()
		return s.StoreErrors >= 2*n && s.PendingStore == n
	})
	if got := l.stored(t, ips); len(got) > 0 {
		t.Fatalf("%v stored on a full disk", got)
	}
	if got := ack.list(); len(got) > 0 {
		t.Fatalf("lines %v acknowledged while their alerts were not stored", got)
	}
	if err := l.lastStoreErr(); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("store writes failed with %v, want the disk full", err)
	}
	t.Logf("disk full: %+v, %v", l.d.Stats(), l.lastStoreErr())

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the pending bans stored", func() bool { return l.d.Stats().PendingStore == 0 })
	if got := l.stored(t, ips); len(got) != n {
		t.Fatalf("stored %v once space returned, want all of %v", got, ips)
	}
	waitUntil(t, "every line acknowledged", func() bool { return len(ack.list()) == n })
	t.Logf("space back: %+v", l.d.Stats())

	// The restart: store, backend and reconciler again, on the same kernel.
	l.stop()
	l = startLive(t, path, ns)
	if got, err := l.r.LoadResult(); got != n || err != nil {
		t.Fatalf("the restart loaded %d decisions (%v), want %d", got, err, n)
	}
	// A verify pass is where a start used to delete what the store lacked.
	drift, err := l.r.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify after restart: %v", err)
	}
	held := l.kernel(t)
	var missing []netip.Prefix
	for _, p := range ips {
		if !held[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("after the restart the kernel lost %v (verify found %s)", missing, fmt.Sprint(drift.Backends))
	}
	if got := l.stored(t, ips); len(got) != n {
		t.Fatalf("after the restart the store holds %v, want all of %v", got, ips)
	}
}
