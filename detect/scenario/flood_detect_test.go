package scenario

import (
	"cmp"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/model"
)

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// shippedSSH is the ssh-bf, ssh-user-enum and ssh-slow-bf scenarios moat
// ships.
const shippedSSH = "../../packaging/hub/scenarios/moat/ssh-bf.yaml"

// pourLikeEngine pours e as the engine does: it holds the event while
// pouring and strips the parsed fields of one a bucket keeps. The event
// carries its log time, as dateparse-enrich sets it for a replay.
func pourLikeEngine(set *Set, e *detect.Event) []model.Alert {
	e.MarshaledTime = e.Time.Format(time.RFC3339Nano)
	e.Hold()
	a := set.Pour(e)
	if !e.Release() {
		e.TakeParsed()
	}
	return a
}

// benignAddr is the i-th address of 10.0.0.0/8.
func benignAddr(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

// floodCase is a flood of low-rate sources with brute-forcers inside.
type floodCase struct {
	benign     int           // sources failing twice, 2 minutes apart
	span       time.Duration // over which the benign sources start
	fast, slow int           // brute-forcers: 10 tries 1s apart; 30 tries 20s apart
	maxBuckets int
	live       bool // Tick every second of the clock, as the daemon does
	heapBound  uint64
}

type floodResult struct {
	fastCaught, slowCaught, falseBans int
	heapGrowth, heapPeak              uint64
	stats                             Stats
}

type timedEvent struct {
	t    time.Duration
	ip   string
	user string
}

// runFlood pours the case's events in time order: the benign sources'
// first and second failures and the brute-forcers' tries are three sorted
// streams, merged on the fly so the test holds no 2M-event slice.
func runFlood(t *testing.T, c floodCase) floodResult {
	t.Helper()
	set, err := Load([]string{shippedSSH}, Options{MaxBuckets: c.maxBuckets, Replay: !c.live})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var attacks []timedEvent
	attackers := map[string]bool{}
	for i := range c.fast {
		ip := floodAddr(i)
		attackers[ip] = true
		at := time.Duration(rng.Int64N(int64(c.span)))
		for k := range 10 {
			attacks = append(attacks, timedEvent{at + time.Duration(k)*time.Second, ip, "root"})
		}
	}
	for i := range c.slow {
		ip := floodAddr(c.fast + i)
		attackers[ip] = true
		at := time.Duration(rng.Int64N(int64(c.span - 600*time.Second)))
		for k := range 30 {
			attacks = append(attacks, timedEvent{at + time.Duration(k)*20*time.Second, ip, "admin"})
		}
	}
	slices.SortFunc(attacks, func(a, b timedEvent) int { return cmp.Compare(a.t, b.t) })
	step := c.span / time.Duration(c.benign)
	const gap = 120 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

	var res floodResult
	caught := map[string]string{}
	before := heapInUse()
	var clock time.Duration
	first, second, ai, n := 0, 0, 0, 0
	const never = time.Duration(math.MaxInt64)
	for {
		// The earliest of the three streams' next events.
		tf, ts, ta := never, never, never
		if first < c.benign {
			tf = time.Duration(first) * step
		}
		if second < c.benign {
			ts = time.Duration(second)*step + gap
		}
		if ai < len(attacks) {
			ta = attacks[ai].t
		}
		var ev timedEvent
		switch {
		case tf == never && ts == never && ta == never:
		case ta <= tf && ta <= ts:
			ev = attacks[ai]
			ai++
		case tf <= ts:
			ev = timedEvent{tf, benignAddr(first), "admin"}
			first++
		default:
			ev = timedEvent{ts, benignAddr(second), "admin"}
			second++
		}
		if ev.ip == "" {
			break
		}
		var alerts []model.Alert
		if c.live {
			// The daemon's ticker: time-driven work once a second.
			for clock+time.Second <= ev.t {
				clock += time.Second
				alerts = append(alerts, set.Tick(t0.Add(clock))...)
			}
		}
		alerts = append(alerts, pourLikeEngine(set, sshEvent(ev.ip, ev.user, t0.Add(ev.t)))...)
		for _, a := range alerts {
			if !attackers[a.Value] {
				res.falseBans++
				if res.falseBans < 5 {
					t.Errorf("false ban: %s by %s", a.Value, a.Scenario)
				}
				continue
			}
			if caught[a.Value] == "" || a.Scenario != "moat/ssh-user-enum" {
				caught[a.Value] = a.Scenario
			}
		}
		if n++; n%(1<<18) == 0 {
			h := heapInUse()
			res.heapPeak = max(res.heapPeak, h-min(before, h))
		}
	}
	after := heapInUse()
	res.heapGrowth = after - min(before, after)
	res.heapPeak = max(res.heapPeak, res.heapGrowth)
	for i := range c.fast {
		if caught[floodAddr(i)] == "moat/ssh-bf" {
			res.fastCaught++
		}
	}
	for i := range c.slow {
		if caught[floodAddr(c.fast+i)] == "moat/ssh-slow-bf" {
			res.slowCaught++
		}
	}
	res.stats = set.Stats()
	for _, sc := range res.stats.Scenarios {
		t.Logf("%s: %d buckets, %d evictions, %d overflows", sc.Name, sc.Buckets, sc.Evictions, sc.Overflows)
	}
	runtime.KeepAlive(set)
	return res
}

// fullFlood runs the 1M-source floods: minutes on two loaded cores, so
// only when MOAT_FLOOD_FULL=1; otherwise a tenth of them against a tenth
// of the cap.
func fullFlood() bool { return os.Getenv("MOAT_FLOOD_FULL") == "1" }

// floodCases are the flood TestFloodDetection runs: 1M sources over 30
// minutes against the default cap (MOAT_FLOOD_FULL=1), else 100k over 15
// minutes against a tenth of it.
func floodCases() floodCase {
	if !fullFlood() {
		return floodCase{benign: 100_000, span: 15 * time.Minute, fast: 100, slow: 20, maxBuckets: 10_000, heapBound: 40 << 20}
	}
	return floodCase{benign: 1_000_000, span: 30 * time.Minute, fast: 1000, slow: 200, heapBound: 200 << 20}
}

// TestFloodDetection is the flood a botnet hides a brute force in:
// low-rate sources (two failures each, two minutes apart) far beyond the
// bucket cap, with fast and slow brute-forcers among them, in a replay and
// live. 99% of the brute-forcers must be caught by their scenario, no
// flood source banned, and the heap must stay bounded.
func TestFloodDetection(t *testing.T) {
	for _, live := range []bool{false, true} {
		name := "replay"
		if live {
			name = "live"
		}
		t.Run(name, func(t *testing.T) {
			c := floodCases()
			c.live = live
			start := time.Now()
			r := runFlood(t, c)
			t.Logf("%d flood sources: fast %d/%d caught, slow %d/%d caught, %d false bans; heap growth %.1f MiB (peak %.1f MiB), process peak RSS %.1f MiB, %s",
				c.benign, r.fastCaught, c.fast, r.slowCaught, c.slow, r.falseBans,
				float64(r.heapGrowth)/(1<<20), float64(r.heapPeak)/(1<<20), float64(peakRSS())/(1<<20), time.Since(start).Round(time.Millisecond))
			if r.fastCaught*100 < c.fast*99 || r.slowCaught*100 < c.slow*99 {
				t.Errorf("caught %d/%d fast and %d/%d slow brute-forcers, want 99%%", r.fastCaught, c.fast, r.slowCaught, c.slow)
			}
			if r.falseBans != 0 {
				t.Errorf("%d flood sources banned", r.falseBans)
			}
			if r.heapPeak > c.heapBound {
				t.Errorf("heap grew %d bytes, bound %d", r.heapPeak, c.heapBound)
			}
		})
	}
}

// TestFloodOfAttackers: 1M real attackers, 6 tries each a second apart,
// starting 6,000 a second (30k live ssh-bf buckets at once, ssh-slow-bf
// far beyond its cap): every one must overflow ssh-bf. Without
// MOAT_FLOOD_FULL=1, 100k against a tenth of the cap.
func TestFloodOfAttackers(t *testing.T) {
	n, rate, maxBuckets := 1_000_000, 6000, 0
	if !fullFlood() {
		n, rate, maxBuckets = 100_000, 600, 10_000
	}
	set, err := Load([]string{shippedSSH}, Options{MaxBuckets: maxBuckets, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	before := heapInUse()
	start := time.Now()
	banned := make([]bool, n)
	// Attacker i starts at i/rate seconds; its k-th try comes k seconds
	// later. Each step pours every try due then.
	step := time.Second / time.Duration(rate)
	for j := 0; j < n+5*rate; j++ {
		for k := 5; k >= 0; k-- {
			i := j - k*rate
			if i < 0 || i >= n {
				continue
			}
			for _, a := range pourLikeEngine(set, sshEvent(benignAddr(i), "root", t0.Add(time.Duration(j)*step))) {
				if a.Scenario == "moat/ssh-bf" {
					b := netip.MustParseAddr(a.Value).As4()
					banned[int(b[1])<<16|int(b[2])<<8|int(b[3])] = true
				}
			}
		}
	}
	h := heapInUse()
	grow := h - min(before, h)
	got := 0
	for _, b := range banned {
		if b {
			got++
		}
	}
	t.Logf("%d attackers: %d banned by ssh-bf; heap growth %.1f MiB, process peak RSS %.1f MiB, %s",
		n, got, float64(grow)/(1<<20), float64(peakRSS())/(1<<20), time.Since(start).Round(time.Millisecond))
	if got != n {
		t.Errorf("%d of %d attackers banned", got, n)
	}
	runtime.KeepAlive(set)
}
