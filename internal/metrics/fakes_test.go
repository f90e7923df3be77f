package metrics

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// world is one fake of every component, consistent with itself: a ban
// bumps the engine, the decision service, the reconciler and the kernel
// the way the real pipeline would.
type world struct {
	mu        sync.Mutex
	sources   []SourceStat
	eng       EngineStats
	rec       ReconcilerStats
	nftDrops  map[string]DropCounter
	nftElems  map[string]int
	xdp       XDPCounters
	xdpElems  map[string]int
	decisions []model.Decision
	alerts    []model.Alert
	created   map[[2]string]uint64 // scenario, origin -> decisions
	alertsBy  map[[2]string]uint64
	nextID    int64
	// The pipeline's store side: a write failed twice, one still pending.
	storeErrors  uint64
	pendingStore int64
}

func newWorld() *world {
	return &world{
		sources: []SourceStat{
			{Name: "/var/log/auth.log", Kind: "file", Lines: 1200, Bytes: 96000, Up: true, Lag: 3 * time.Millisecond},
			{Name: "journald:ssh.service", Kind: "journald", Lines: 40, Bytes: 3100, Errors: 2, Up: false, Err: "journal rotated"},
		},
		eng: EngineStats{
			Lines: 1240, Parsed: 1100, Unparsed: 140, Whitelisted: 3,
			Reprocessed: 12, ReprocessDropped: 1, ProxyRewritten: 40, ProxyRefused: 2, ContextErrors: 1,
			GrokPatterns: map[string]int{"fast": 1, "backtrack": 12, "regexp": 0},
			Parsers: []ParserStat{
				{Stage: "s00-raw", Parser: "crowdsecurity/syslog-logs", Hits: 1240, Parsed: 1240},
				{Stage: "s01-parse", Parser: "crowdsecurity/sshd-logs", Hits: 1240, Parsed: 1100},
				{Stage: "s02-enrich", Parser: "crowdsecurity/dateparse-enrich", Hits: 1100, Parsed: 1100},
			},
			Scenarios: []ScenarioStat{
				{Name: "crowdsecurity/ssh-bf", Pours: 300, Overflows: 4, Buckets: 12, MaxBuckets: 50000},
				{Name: "crowdsecurity/ssh-slow-bf", Pours: 300, Overflows: 1, Buckets: 30, Evictions: 2,
					MaxBuckets: 30, Degraded: true, SketchPours: 40, Promotions: 3, SketchLost: 1},
			},
		},
		rec: ReconcilerStats{Batches: 10, Entries: 5, LastApply: 180 * time.Microsecond, Drift: 3,
			Repairs: []RepairStat{
				{Backend: "nftables", Kind: "missing", Count: 2}, {Backend: "nftables", Kind: "extra", Count: 1}, {Backend: "nftables", Kind: "expiry"},
				{Backend: "xdp", Kind: "missing"}, {Backend: "xdp", Kind: "extra"}, {Backend: "xdp", Kind: "expiry"},
			}},
		nftDrops: map[string]DropCounter{"ban4": {Packets: 500, Bytes: 30000}, "ban6": {}, "ban4_range": {Packets: 7, Bytes: 420}, "ban6_range": {}},
		nftElems: map[string]int{"ban4": 4, "ban6": 0, "ban4_range": 1, "ban6_range": 0},
		xdp:      XDPCounters{DroppedPackets: 9000, DroppedBytes: 540000, PassedPackets: 123456},
		xdpElems: map[string]int{"ban4": 4, "ban6": 0, "ban4_range": 1, "ban6_range": 0},
		created:  map[[2]string]uint64{{"crowdsecurity/ssh-bf", "local"}: 4, {"", "cli"}: 1},
		alertsBy: map[[2]string]uint64{{"crowdsecurity/ssh-bf", "local"}: 4, {"crowdsecurity/ssh-slow-bf", "local"}: 1},

		storeErrors:  2,
		pendingStore: 1,
	}
}

// ban plays one detection: the scenario overflows, the decision service
// records an alert and a decision, and the reconciler puts it in both
// backends and calls the Applied hook with the latency lat.
func (w *world) ban(ip string, scen string, lat time.Duration, applied func([]model.Decision, time.Time)) model.Decision {
	w.mu.Lock()
	a := netip.MustParseAddr(ip)
	p := netip.PrefixFrom(a, a.BitLen())
	readAt := time.Now().Add(-time.Hour)
	w.nextID++
	d := model.Decision{ID: w.nextID, Value: p, Type: "ban", Origin: model.OriginLocal, Scenario: scen,
		Reason: "test ban", Until: time.Now().Add(4 * time.Hour), ReadAt: readAt}
	w.decisions = append(w.decisions, d)
	w.alerts = append([]model.Alert{{Scenario: scen, Scope: model.ScopeIP, Value: ip, Source: p,
		Start: readAt.Add(-time.Minute), Stop: readAt, EventsCount: 6, ReadAt: readAt}}, w.alerts...)
	for i := range w.eng.Scenarios {
		if w.eng.Scenarios[i].Name == scen {
			w.eng.Scenarios[i].Overflows++
		}
	}
	w.created[[2]string{scen, "local"}]++
	w.alertsBy[[2]string{scen, "local"}]++
	w.rec.Batches++
	w.rec.Entries++
	w.nftElems["ban4"]++
	w.xdpElems["ban4"]++
	w.mu.Unlock()
	// The hook runs outside the lock, as the reconciler calls it from its
	// own goroutine.
	applied([]model.Decision{d, {Value: netip.MustParsePrefix("198.18.9.9/32"), Origin: model.OriginCLI}}, readAt.Add(lat))
	return d
}

func (w *world) SourceStats() []SourceStat {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]SourceStat(nil), w.sources...)
}

func (w *world) Stats() EngineStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.eng
	s.Scenarios = append([]ScenarioStat(nil), w.eng.Scenarios...)
	return s
}

type fakeReconciler struct{ w *world }

func (r fakeReconciler) Stats() ReconcilerStats {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	return r.w.rec
}

type fakeNFT struct{ w *world }

func (n fakeNFT) DropCounters(context.Context) (map[string]DropCounter, error) {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	out := map[string]DropCounter{}
	for k, v := range n.w.nftDrops {
		out[k] = v
	}
	return out, nil
}

func (n fakeNFT) Elements(context.Context) (map[string]int, error) {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	out := map[string]int{}
	for k, v := range n.w.nftElems {
		out[k] = v
	}
	return out, nil
}

type fakeXDP struct{ w *world }

func (x fakeXDP) XDPCounters() (XDPCounters, error) {
	x.w.mu.Lock()
	defer x.w.mu.Unlock()
	return x.w.xdp, nil
}

func (x fakeXDP) Elements(context.Context) (map[string]int, error) {
	x.w.mu.Lock()
	defer x.w.mu.Unlock()
	out := map[string]int{}
	for k, v := range x.w.xdpElems {
		out[k] = v
	}
	return out, nil
}

func (w *world) DecisionCounts(context.Context) (DecisionCounts, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dc := DecisionCounts{Active: map[model.Origin]int{model.OriginLocal: 0, model.OriginCLI: 0}}
	now := time.Now()
	for _, d := range w.decisions {
		if !d.Expired(now) {
			dc.Active[d.Origin]++
		}
	}
	created := func(m map[[2]string]uint64) []CreatedStat {
		var out []CreatedStat
		for k, v := range m {
			out = append(out, CreatedStat{Scenario: k[0], Origin: model.Origin(k[1]), Count: v})
		}
		sort.Slice(out, func(i, j int) bool {
			return out[i].Scenario+string(out[i].Origin) < out[j].Scenario+string(out[j].Origin)
		})
		return out
	}
	dc.Decisions = created(w.created)
	dc.Alerts = created(w.alertsBy)
	dc.StoreErrors, dc.PendingStore = w.storeErrors, w.pendingStore
	return dc, nil
}

func (w *world) ActiveDecisions(_ context.Context, f DecisionFilter) ([]model.Decision, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []model.Decision
	for _, d := range w.decisions {
		if f.IP.IsValid() && !d.Value.Contains(f.IP) {
			continue
		}
		out = append(out, d)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

func (w *world) RecentAlerts(_ context.Context, n int) ([]model.Alert, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > len(w.alerts) {
		n = len(w.alerts)
	}
	return append([]model.Alert(nil), w.alerts[:n]...), nil
}

// newTestServer builds a Server over a fresh world.
func newTestServer(t testing.TB) (*Server, *world) {
	t.Helper()
	w := newWorld()
	s, err := New(Config{
		Sources: w, Engine: w, Reconciler: fakeReconciler{w}, NFTables: fakeNFT{w}, XDP: fakeXDP{w},
		Decisions: w, Status: w, DropsInterval: 50 * time.Millisecond,
		// Count the kernel at every scrape: the fakes answer at once.
		ElementsInterval: time.Nanosecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, w
}
