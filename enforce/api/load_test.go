package api

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
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

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/model"
)

// Load test figures. The RSS bound covers the whole test process: the
// daemon's pieces and the 2,010 clients attacking them.
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
)

// timedEnforcer notes when each ban reached it.
type timedEnforcer struct {
	mu sync.Mutex
	at map[netip.Prefix]time.Time
}

func (e *timedEnforcer) Apply(_ context.Context, add, _ []model.Decision) error {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range add {
		e.at[d.Value] = now
	}
	return nil
}

func (e *timedEnforcer) reached(p netip.Prefix) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.at[p]
	return t, ok
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

// rawRequest connects and sends a GET it will never read the answer of.
func rawRequest(addr, path, key string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\nUser-Agent: stalled/1\r\n\r\n", path, addr, key)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

type loadCounts struct {
	startups, polls, refused, failed atomic.Int64
	startupBytes                     atomic.Int64
}

// bouncer behaves as a CrowdSec bouncer does: a startup pull until one
// succeeds, then a delta every loadPoll (with jitter), until ctx ends.
func bouncer(ctx context.Context, c *http.Client, base, key string, n *loadCounts) {
	startup := true
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/decisions/stream?startup="+strconv.FormatBool(startup), nil)
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("User-Agent", "crowdsec-firewall-bouncer/load")
		wait := loadPoll/2 + rand.N(loadPoll)
		resp, err := c.Do(req)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				n.failed.Add(1)
			}
		case resp.StatusCode == http.StatusOK:
			size, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				n.failed.Add(1)
				break
			}
			if startup {
				n.startups.Add(1)
				n.startupBytes.Add(size)
				startup = false
			} else {
				n.polls.Add(1)
			}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			n.refused.Add(1)
			wait = time.Second/2 + rand.N(2*time.Second)
		default:
			n.failed.Add(1)
		}
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// TestLoadBansUnderBouncerLoad runs the decision service and the bouncer
// API on loopback with 100k decisions stored while 1,000 bouncers pull
// (startup, then deltas), 10 more send a startup pull and never read, and
// 1,000 clients ask for every decision and never read the answer. New SSH
// brute-force alerts go through the decision service as the daemon sends
// them; each ban must reach the enforcer (the Enforcer interface the
// reconciler implements) with p99 under loadBanP99, and the process's RSS
// must stay under loadRSSBound.
func TestLoadBansUnderBouncerLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: 100k decisions and 2,010 loopback clients; skipped with -short")
	}
	raiseNoFile(t, 16384)
	enf := &timedEnforcer{at: map[netip.Prefix]time.Time{}}
	f := newFixtureOn(t, enf)
	fillDecisions(t, f, loadDecisions)
	keys := make([]string, loadBouncers+loadStalled)
	for i := range keys {
		keys[i] = f.bouncerKey(t, fmt.Sprintf("fw%04d", i))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(srvCtx, ln, f.srv.BouncerHandler()) }()
	defer func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	addr := ln.Addr().String()
	base := "http://" + addr

	ctx, stopLoad := context.WithTimeout(context.Background(), 90*time.Second)
	defer stopLoad()
	rssBefore := procStatus(t, "VmRSS")

	// The watchdog ends the load as soon as memory passes the bound, so a
	// failing run does not take the host down with it.
	var rssMax atomic.Int64
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			rss := procStatus(t, "VmRSS")
			if rss > rssMax.Load() {
				rssMax.Store(rss)
			}
			if rss > loadRSSBound {
				stopLoad()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range loadStalled {
		c, err := rawRequest(addr, "/v1/decisions/stream?startup=true", keys[loadBouncers+i])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)

	var counts loadCounts
	tr := &http.Transport{MaxIdleConnsPerHost: loadBouncers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for i := range loadBouncers {
		wg.Go(func() { bouncer(ctx, client, base, keys[i], &counts) })
	}
	for i := range loadUnreadLists {
		c, err := rawRequest(addr, "/v1/decisions", keys[i%loadBouncers])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(2 * time.Second)

	lat, failed := sendBans(ctx, t, f.svc, enf)

	stopLoad()
	<-watchdog
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	t.Logf("bans: %d reached the enforcer, %d failed; latency p50 %v p99 %v max %v", len(lat)-failed, failed, pct(0.5), pct(0.99), pct(1))
	t.Logf("RSS: %d MiB before the load, %d MiB at most during it (bound %d MiB); VmHWM %d MiB",
		rssBefore>>20, rssMax.Load()>>20, loadRSSBound>>20, procStatus(t, "VmHWM")>>20)
	t.Logf("bouncers: %d startups (%d MiB), %d delta polls, %d refused (429/503), %d failed",
		counts.startups.Load(), counts.startupBytes.Load()>>20, counts.polls.Load(), counts.refused.Load(), counts.failed.Load())
	if rssMax.Load() > loadRSSBound {
		t.Errorf("RSS reached %d MiB, bound %d MiB", rssMax.Load()>>20, loadRSSBound>>20)
	}
	if failed > 0 || len(lat) < loadBans {
		t.Errorf("%d of %d bans did not reach the enforcer within %v", failed+loadBans-len(lat), loadBans, loadBanTimeout)
	}
	if p99 := pct(0.99); p99 > loadBanP99 {
		t.Errorf("ban latency p99 %v, want < %v", p99, loadBanP99)
	}
	if counts.startups.Load() == 0 {
		t.Error("no bouncer finished a startup pull")
	}
}

// sendBans sends loadBans SSH brute-force alerts through the decision
// service as the daemon's detection loop does (kernel first, store write
// in the background) and returns each ban's time to the enforcer; a ban
// that failed counts as loadBanTimeout.
func sendBans(ctx context.Context, t *testing.T, svc *decision.Service, enf *timedEnforcer) (lat []time.Duration, failed int) {
	var stores sync.WaitGroup
	defer stores.Wait()
	for i := range loadBans {
		if ctx.Err() != nil || failed >= 5 {
			break
		}
		time.Sleep(loadBanEvery)
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113 + byte(i>>8), byte(i)}), 32)
		a := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: src.Addr().String(), Source: src,
			Remediation: true, EventsCount: 6, Start: time.Now(), Stop: time.Now(), Message: "Ip " + src.Addr().String() + " performed 'crowdsecurity/ssh-bf' (6 events)"}
		actx, cancel := context.WithTimeout(ctx, loadBanTimeout)
		t0 := time.Now()
		_, stored, err := svc.Enforce(actx, a)
		at, ok := enf.reached(src)
		cancel()
		if err != nil || !ok {
			t.Logf("ban %d (%s): %v", i, src, err)
			failed++
			lat = append(lat, loadBanTimeout)
			continue
		}
		lat = append(lat, at.Sub(t0))
		stores.Go(func() {
			if err := stored(); err != nil {
				t.Errorf("store ban %s: %v", src, err)
			}
		})
	}
	return lat, failed
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
