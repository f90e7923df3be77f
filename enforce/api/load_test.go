package api

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// Load test figures. The clients run in a process of their own, so the
// RSS bound covers moat's side alone: store, decision service, reconciler,
// nftables backend and the bouncer API.
const (
	loadDecisions   = 100_000
	loadBouncers    = 1000
	loadStalled     = 10
	loadUnreadLists = 1000
	loadBans        = 200
	loadBanEvery    = 100 * time.Millisecond
	loadPoll        = 5 * time.Second
	loadBanP99      = 10 * time.Millisecond
	// loadBanTimeout fails a ban that waits this long; a handful of them
	// ends the test early instead of waiting out the stalled clients.
	loadBanTimeout = 2 * time.Second
	loadRSSBound   = 768 << 20
	// The least the bouncers must have had answered for the bans to count
	// as timed under load.
	loadMinStartups = 25
	loadMinPolls    = 5
)

// stampedBackend is moat's nftables backend with a clock: it notes when
// the kernel transaction carrying each watched address began and when it
// returned, so a ban is timed up to the kernel holding it.
type stampedBackend struct {
	*nft.Backend
	watch netip.Prefix

	mu sync.Mutex
	at map[netip.Prefix]kernelStamp
}

type kernelStamp struct{ start, done time.Time }

func (b *stampedBackend) Apply(ctx context.Context, d enforce.Diff) error {
	start := time.Now()
	err := b.Backend.Apply(ctx, d)
	done := time.Now()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range d.Set {
		if b.watch.Contains(e.Prefix.Addr()) {
			b.at[e.Prefix] = kernelStamp{start, done}
		}
	}
	return nil
}

func (b *stampedBackend) reached(p netip.Prefix) (kernelStamp, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.at[p]
	return s, ok
}

// loadKernel is the daemon's enforcement side for the load test: the
// fixture's store and decision service over a reconciler writing moat's
// nftables table in a network namespace of the test's own.
type loadKernel struct {
	f   *fixture
	rec *enforce.Reconciler
	be  *stampedBackend
}

// newLoadKernel stores n decisions, then starts the reconciler as the
// daemon does (loading the store in the background, with the daemon's
// default batching) and waits until the kernel holds them all.
func newLoadKernel(t *testing.T, n int) *loadKernel {
	ns := testutil.NewNetNS(t)
	fd, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	nb, err := nft.Open(context.Background(), nft.Config{NetNS: int(fd.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nb.Close() })
	k := &loadKernel{be: &stampedBackend{Backend: nb, watch: netip.MustParsePrefix("203.0.112.0/20"), at: map[netip.Prefix]kernelStamp{}}}
	def := config.Default().Enforce
	k.rec = enforce.NewReconciler(enforce.ReconcilerConfig{
		Window:         def.BatchWindow,
		MaxBatch:       def.BatchMax,
		VerifyInterval: def.VerifyInterval,
		IPv6Prefix:     def.IPv6BanPrefix,
		// The fixture's allowlist stays in the service: the seed has
		// addresses in it, stored behind the service's back.
		Guard: enforce.NewGuard(enforce.GuardConfig{MinBits4: def.MinRangeBits4, MinBits6: def.MinRangeBits6}),
		Load: func(ctx context.Context, load func([]model.Decision) error) error {
			return k.f.st.ActivePages(ctx, time.Now(), 0, load)
		},
	}, k.be)
	k.f = newFixtureOn(t, k.rec)
	fillDecisions(t, k.f, n)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- k.rec.Run(ctx) }()
	// Registered after the fixture's: the reconciler stops before the
	// store it loads from closes.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-k.rec.Ready():
	case <-time.After(2 * time.Minute):
		t.Fatal("the reconciler did not load the store into the kernel")
	}
	if got, err := k.rec.LoadResult(); got != n || err != nil {
		t.Fatalf("the reconciler loaded %d decisions (%v), want %d", got, err, n)
	}
	if st := k.rec.Stats(); st.Entries != int64(n) || st.ApplyErrors != 0 {
		t.Fatalf("reconciler after the load: %d entries, %d apply errors; want %d, 0", st.Entries, st.ApplyErrors, n)
	}
	t.Logf("seed: %d decisions in the kernel %v after the reconciler started", n, time.Since(start).Round(time.Millisecond))
	return k
}

// kernelHolds reads moat's sets back from the kernel and returns how many
// entries they hold and which of want are missing.
func (k *loadKernel) kernelHolds(t *testing.T, want []netip.Prefix) (n int, missing []netip.Prefix) {
	t.Helper()
	var held []enforce.Entry
	start := time.Now()
	err := k.rec.Do(context.Background(), func() (err error) {
		held, err = k.be.List(context.Background())
		return err
	})
	if err != nil {
		t.Fatalf("list the nft sets: %v", err)
	}
	in := make(map[netip.Prefix]bool, len(held))
	for _, e := range held {
		in[e.Prefix] = true
	}
	for _, p := range want {
		if !in[p] {
			missing = append(missing, p)
		}
	}
	t.Logf("kernel: %d entries listed in %v", len(held), time.Since(start).Round(time.Millisecond))
	return len(held), missing
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(t testing.TB, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// raiseNoFile makes room for n descriptors.
func raiseNoFile(t testing.TB, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n {
		t.Skipf("SKIPPED: the load test needs %d file descriptors, RLIMIT_NOFILE allows %d (%v)", n, lim.Cur, err)
	}
}

// rssWatchdog notes the process's peak RSS every 50ms until ctx ends, and
// ends the load (stop) as soon as it passes the bound, so a failing run
// does not take the host down with it. The returned channel closes when
// it returns.
func rssWatchdog(ctx context.Context, t *testing.T, stop func(), peak *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			rss := procStatus(t, "VmRSS")
			if rss > peak.Load() {
				peak.Store(rss)
			}
			if rss > loadRSSBound {
				stop()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return done
}

// TestLoadBansUnderBouncerLoad runs the decision service, the reconciler
// over moat's nftables table (in a network namespace of its own) and the
// bouncer API on loopback, with 100k decisions stored and in the kernel,
// while 1,000 bouncers pull (startup, then deltas), 10 more send a startup
// pull and never read, and 1,000 clients ask for every decision and never
// read the answer. The clients are a process of their own, as bouncers
// are: this test binary again, run with loadClientsEnv set. New SSH
// brute-force alerts go through the decision service as the daemon sends
// them; each ban is timed from the alert handed to the service until the
// nftables transaction holding it has returned, and its p99 must stay
// under loadBanP99. The RSS of the test process, moat's side, must stay
// under loadRSSBound, and the kernel must hold every ban afterwards.
func TestLoadBansUnderBouncerLoad(t *testing.T) {
	if keys := os.Getenv(loadClientsEnv); keys != "" {
		runLoadClients(t, keys, os.Getenv(loadAddrEnv))
		return
	}
	if testing.Short() {
		t.Skip("load test: 100k decisions in the kernel and 2,010 loopback clients; skipped with -short")
	}
	testutil.RequireRoot(t)
	raiseNoFile(t, 16384)
	k := newLoadKernel(t, loadDecisions)

	ctx, stopLoad := context.WithTimeout(context.Background(), 90*time.Second)
	defer stopLoad()
	rssBefore := procStatus(t, "VmRSS")
	var rssMax atomic.Int64
	watchdog := rssWatchdog(ctx, t, stopLoad, &rssMax)
	clients := startLoadClients(ctx, t, k.f)
	time.Sleep(2 * time.Second)

	bans := sendBans(ctx, t, k.f.svc, k.be)

	stopLoad()
	<-watchdog
	c := clients.stop(t)
	srv := k.f.srv.Stats()
	t.Logf("bans: %d reached the kernel, %d failed; alert to kernel %s; in the nft transaction %s; alert to Enforce's return %s",
		len(bans.total)-bans.failed, bans.failed, pctiles(bans.total), pctiles(bans.kernel), pctiles(bans.returned))
	t.Logf("RSS of moat's side: %d MiB before the load, %d MiB at most during it (bound %d MiB); VmHWM %d MiB; client process VmHWM %d MiB",
		rssBefore>>20, rssMax.Load()>>20, loadRSSBound>>20, procStatus(t, "VmHWM")>>20, c.PeakRSS>>20)
	t.Logf("bouncers: %d startups (%d MiB), %d delta polls, %d refused (429/503), %d failed; %d stalled streams, %d unread listings",
		c.Startups, c.StartupBytes>>20, c.Polls, c.Refused, c.Failed, c.Stalled, c.Unread)
	t.Logf("server: %d refused, %d write timeouts, %d aborted", srv.Refused, srv.WriteTimeouts, srv.Aborted)
	if rssMax.Load() > loadRSSBound {
		t.Errorf("RSS reached %d MiB, bound %d MiB", rssMax.Load()>>20, loadRSSBound>>20)
	}
	if bans.failed > 0 || len(bans.total) < loadBans {
		t.Errorf("%d of %d bans did not reach the kernel within %v", bans.failed+loadBans-len(bans.total), loadBans, loadBanTimeout)
	}
	if p99 := pctile(bans.total, 0.99); p99 > loadBanP99 {
		t.Errorf("ban latency p99 %v, want < %v", p99, loadBanP99)
	}
	checkLoadApplied(t, c, srv)
	n, missing := k.kernelHolds(t, bans.sent)
	if len(missing) > 0 {
		t.Errorf("the kernel lacks %d of the %d bans: %v", len(missing), len(bans.sent), missing)
	}
	if want := loadDecisions + len(bans.sent); n != want {
		t.Errorf("the kernel holds %d entries, want %d (the seed and the bans)", n, want)
	}
	if st := k.rec.Stats(); st.ApplyErrors != 0 {
		t.Errorf("reconciler: %d apply errors", st.ApplyErrors)
	}
}

// checkLoadApplied checks that the bans were timed under the load the test
// means: startup pulls and delta polls answered, every stalled stream and
// unread listing connected, and the refusals the clients saw counted by
// the server.
func checkLoadApplied(t *testing.T, c loadReport, srv ServerStats) {
	t.Helper()
	if c.Startups < loadMinStartups || c.Polls < loadMinPolls {
		t.Errorf("the bouncers finished %d startup pulls and %d delta polls, want at least %d and %d", c.Startups, c.Polls, loadMinStartups, loadMinPolls)
	}
	if c.Stalled != loadStalled || c.Unread != loadUnreadLists {
		t.Errorf("%d stalled streams and %d unread listings, want %d and %d", c.Stalled, c.Unread, loadStalled, loadUnreadLists)
	}
	if c.Refused == 0 || srv.Refused < c.Refused {
		t.Errorf("the bouncers saw %d refusals and the server counted %d: want some, every one counted", c.Refused, srv.Refused)
	}
}

// banTimes are the load test's ban latencies, sorted: total from the alert
// handed to the service until the kernel transaction holding the ban
// returned; kernel the transaction alone; returned until Enforce returned.
type banTimes struct {
	total, kernel, returned []time.Duration
	failed                  int
	// sent are the banned addresses.
	sent []netip.Prefix
}

func pctile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(p*float64(len(lat))))]
}

func pctiles(lat []time.Duration) string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v p99 %v max %v", r(pctile(lat, 0.5)), r(pctile(lat, 0.99)), r(pctile(lat, 1)))
}

// sendBans sends loadBans SSH brute-force alerts through the decision
// service as the daemon's detection loop does (kernel first, store write
// in the background) and times each ban up to the kernel; a ban that
// failed counts as loadBanTimeout.
func sendBans(ctx context.Context, t *testing.T, svc *decision.Service, be *stampedBackend) (bt banTimes) {
	var stores sync.WaitGroup
	defer stores.Wait()
	defer func() {
		for _, l := range [][]time.Duration{bt.total, bt.kernel, bt.returned} {
			slices.Sort(l)
		}
	}()
	for i := range loadBans {
		if ctx.Err() != nil || bt.failed >= 5 {
			break
		}
		time.Sleep(loadBanEvery)
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113 + byte(i>>8), byte(i)}), 32)
		a := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: src.Addr().String(), Source: src,
			Remediation: true, EventsCount: 6, Start: time.Now(), Stop: time.Now(), Message: "Ip " + src.Addr().String() + " performed 'crowdsecurity/ssh-bf' (6 events)"}
		actx, cancel := context.WithTimeout(ctx, loadBanTimeout)
		t0 := time.Now()
		_, stored, err := svc.Enforce(actx, a)
		ret := time.Now()
		at, ok := be.reached(src)
		cancel()
		bt.sent = append(bt.sent, src)
		if err != nil || !ok {
			t.Logf("ban %d (%s): %v", i, src, err)
			bt.failed++
			bt.total = append(bt.total, loadBanTimeout)
			continue
		}
		bt.total = append(bt.total, at.done.Sub(t0))
		bt.kernel = append(bt.kernel, at.done.Sub(at.start))
		bt.returned = append(bt.returned, ret.Sub(t0))
		stores.Go(func() {
			if err := stored(); err != nil {
				t.Errorf("store ban %s: %v", src, err)
			}
		})
	}
	return bt
}

// fillDecisions stores n active bans on distinct addresses in batches, as
// a blocklist import would.
func fillDecisions(t testing.TB, f *fixture, n int) {
	until := time.Now().Add(24 * time.Hour)
	const batch = 50_000
	for i := 0; i < n; i += batch {
		ds := make([]model.Decision, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			a := netip.AddrFrom4([4]byte{198, 18 + byte(j>>16)&1, byte(j >> 8), byte(j)})
			ds = append(ds, model.Decision{Value: netip.PrefixFrom(a, 32), Type: "ban", Origin: model.OriginList, Scenario: "crowdsecurity/ssh-bf", Until: until})
		}
		if err := f.st.InsertDecisions(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
	}
}
