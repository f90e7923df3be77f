package metrics

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatsec/moat/internal/model"
)

// updater reads one component and sends its metrics, built on the spot.
type updater interface {
	Update(ctx context.Context, ch chan<- prometheus.Metric) error
}

// scrapeCollector runs every updater on each scrape and reports whether each
// one succeeded, as node_exporter does: a failing backend loses its own
// figures, never the whole scrape.
type scrapeCollector struct {
	updaters map[string]updater
	timeout  time.Duration
	duration *prometheus.Desc
	success  *prometheus.Desc
}

func newScrapeCollector(updaters map[string]updater, timeout time.Duration) *scrapeCollector {
	return &scrapeCollector{
		updaters: updaters,
		timeout:  timeout,
		duration: prometheus.NewDesc("moat_scrape_collector_duration_seconds",
			"How long a collector took to read its component.", []string{"collector"}, nil),
		success: prometheus.NewDesc("moat_scrape_collector_success",
			"Whether a collector read its component (1) or failed (0).", []string{"collector"}, nil),
	}
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.duration
	ch <- c.success
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	names := make([]string, 0, len(c.updaters))
	for n := range c.updaters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		start := time.Now()
		err := c.updaters[n].Update(ctx, ch)
		ok := 1.0
		if err != nil {
			ok = 0
		}
		ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, time.Since(start).Seconds(), n)
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, ok, n)
	}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sourcesUpdater: lines and bytes per acquisition source.
type sourcesUpdater struct {
	src                                Sources
	lines, bytes, errors, cut, lag, up *prometheus.Desc
}

func newSourcesUpdater(s Sources) *sourcesUpdater {
	return &sourcesUpdater{
		src:    s,
		lines:  desc("moat_source_lines_total", "Lines read from an acquisition source.", "source", "kind"),
		bytes:  desc("moat_source_bytes_total", "Bytes read from an acquisition source.", "source", "kind"),
		errors: desc("moat_source_errors_total", "Read errors of an acquisition source.", "source", "kind"),
		cut:    desc("moat_source_cut_lines_total", "Lines cut at the maximum line length.", "source", "kind"),
		lag:    desc("moat_source_lag_seconds", "How far a source is behind the end of its log.", "source", "kind"),
		up:     desc("moat_source_up", "Whether an acquisition source is reading (1) or failing (0).", "source", "kind"),
	}
}

func (u *sourcesUpdater) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	for _, s := range u.src.SourceStats() {
		counter(ch, u.lines, s.Lines, s.Name, s.Kind)
		counter(ch, u.bytes, s.Bytes, s.Name, s.Kind)
		counter(ch, u.errors, s.Errors, s.Name, s.Kind)
		counter(ch, u.cut, s.CutLines, s.Name, s.Kind)
		gauge(ch, u.lag, s.Lag.Seconds(), s.Name, s.Kind)
		gauge(ch, u.up, boolValue(s.Up), s.Name, s.Kind)
	}
	return nil
}

// engineUpdater: parser and scenario counters.
type engineUpdater struct {
	eng                                                  Engine
	lines, parsed, unparsed, whitelisted                 *prometheus.Desc
	reprocessed, reprocessDropped, proxy, contextErrors  *prometheus.Desc
	nodeHits, nodeParsed, nodeUnparsed                   *prometheus.Desc
	pours, overflows, buckets, evictions, scenarioErrors *prometheus.Desc
	maxBuckets, degraded, sketchPours, promotions        *prometheus.Desc
	sketchLost                                           *prometheus.Desc
	grokPatterns                                         *prometheus.Desc
}

func newEngineUpdater(e Engine) *engineUpdater {
	sp := []string{"stage", "parser"}
	return &engineUpdater{
		eng:         e,
		lines:       desc("moat_engine_lines_total", "Lines the detection engine received."),
		parsed:      desc("moat_engine_lines_parsed_total", "Lines some parser turned into an event."),
		unparsed:    desc("moat_engine_lines_unparsed_total", "Lines no parser understood."),
		whitelisted: desc("moat_engine_lines_whitelisted_total", "Events dropped by a whitelist."),
		reprocessed: desc("moat_engine_reprocessed_total", "Overflows of reprocess scenarios poured into the scenarios again."),
		reprocessDropped: desc("moat_engine_reprocess_dropped_total",
			"Overflows not poured again: past the reprocess depth limit (a scenario fed by its own overflows)."),
		proxy: desc("moat_http_proxy_events_total",
			"HTTP events from a trusted proxy: rewritten (the client its header named is the source) or refused (no usable client in the header; the proxy stayed the source).", "result"),
		contextErrors:  desc("moat_alert_context_errors_total", "Alert context expressions that failed on an overflow's events."),
		nodeHits:       desc("moat_parser_hits_total", "Events that entered a parser (its filter matched).", sp...),
		nodeParsed:     desc("moat_parser_lines_parsed_total", "Events a parser succeeded on.", sp...),
		nodeUnparsed:   desc("moat_parser_lines_unparsed_total", "Events a parser was tried on and failed.", sp...),
		pours:          desc("moat_scenario_pours_total", "Events poured into a scenario's buckets.", "scenario"),
		overflows:      desc("moat_scenario_overflows_total", "Bucket overflows of a scenario.", "scenario"),
		buckets:        desc("moat_scenario_buckets", "Buckets of a scenario alive now.", "scenario"),
		evictions:      desc("moat_scenario_evictions_total", "Buckets of a scenario dropped at the bucket cap.", "scenario"),
		scenarioErrors: desc("moat_scenario_errors_total", "Expression or source errors in a scenario.", "scenario"),
		maxBuckets:     desc("moat_scenario_max_buckets", "A scenario's share of the bucket cap.", "scenario"),
		degraded: desc("moat_scenario_degraded", "Whether a scenario's buckets are at its cap and new sources are counted by its sketch (1) or not (0).",
			"scenario"),
		sketchPours: desc("moat_scenario_sketch_pours_total", "Events of a scenario counted by its sketch, its buckets being at the cap.", "scenario"),
		promotions:  desc("moat_bucket_sketch_promotions_total", "Sources of a scenario promoted from its sketch to a bucket.", "scenario"),
		sketchLost: desc("moat_scenario_sketch_lost_total",
			"Sources of a scenario whose exact count the sketch dropped for lack of room: a brute force among them needs more events to be caught.", "scenario"),
		grokPatterns: desc("moat_grok_patterns", "Compiled grok patterns per matcher tier that serves them first.", "tier"),
	}
}

func (u *engineUpdater) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	st := u.eng.Stats()
	counter(ch, u.lines, st.Lines)
	counter(ch, u.parsed, st.Parsed)
	counter(ch, u.unparsed, st.Unparsed)
	counter(ch, u.whitelisted, st.Whitelisted)
	counter(ch, u.reprocessed, st.Reprocessed)
	counter(ch, u.reprocessDropped, st.ReprocessDropped)
	counter(ch, u.proxy, st.ProxyRewritten, "rewritten")
	counter(ch, u.proxy, st.ProxyRefused, "refused")
	counter(ch, u.contextErrors, st.ContextErrors)
	for tier, n := range st.GrokPatterns {
		gauge(ch, u.grokPatterns, float64(n), tier)
	}
	// The same node name can appear twice in a stage (two files defining
	// it); sum them, since duplicate series would fail the scrape.
	type key struct{ stage, parser string }
	type sums struct{ hits, parsed uint64 }
	seen := map[key]*sums{}
	var order []key
	for _, n := range st.Parsers {
		k := key{n.Stage, n.Parser}
		s := seen[k]
		if s == nil {
			s = &sums{}
			seen[k] = s
			order = append(order, k)
		}
		s.hits += n.Hits
		s.parsed += n.Parsed
	}
	for _, k := range order {
		s := seen[k]
		counter(ch, u.nodeHits, s.hits, k.stage, k.parser)
		counter(ch, u.nodeParsed, s.parsed, k.stage, k.parser)
		unparsed := uint64(0)
		if s.hits > s.parsed {
			unparsed = s.hits - s.parsed
		}
		counter(ch, u.nodeUnparsed, unparsed, k.stage, k.parser)
	}
	done := map[string]bool{}
	for _, sc := range st.Scenarios {
		if done[sc.Name] {
			continue
		}
		done[sc.Name] = true
		counter(ch, u.pours, sc.Pours, sc.Name)
		counter(ch, u.overflows, sc.Overflows, sc.Name)
		gauge(ch, u.buckets, float64(sc.Buckets), sc.Name)
		counter(ch, u.evictions, sc.Evictions, sc.Name)
		counter(ch, u.scenarioErrors, sc.Errors, sc.Name)
		gauge(ch, u.maxBuckets, float64(sc.MaxBuckets), sc.Name)
		gauge(ch, u.degraded, boolValue(sc.Degraded), sc.Name)
		counter(ch, u.sketchPours, sc.SketchPours, sc.Name)
		counter(ch, u.promotions, sc.Promotions, sc.Name)
		counter(ch, u.sketchLost, sc.SketchLost, sc.Name)
	}
	return nil
}

// reconcilerUpdater: batches, errors and the last apply's duration.
type reconcilerUpdater struct {
	rec                                                      Reconciler
	batches, applyErrors, refused, drift, entries, lastApply *prometheus.Desc
	repairs                                                  *prometheus.Desc
}

func newReconcilerUpdater(r Reconciler) *reconcilerUpdater {
	return &reconcilerUpdater{
		rec:         r,
		batches:     desc("moat_reconciler_batches_total", "Batches of changes applied to the kernel."),
		applyErrors: desc("moat_reconciler_apply_errors_total", "Batches a backend failed to apply."),
		refused:     desc("moat_reconciler_refused_total", "Decisions refused by the guard (allowlist, own addresses)."),
		drift:       desc("moat_reconciler_drift_total", "Kernel entries found different from the desired set and repaired."),
		entries:     desc("moat_reconciler_entries", "Prefixes the kernel should hold now."),
		lastApply:   desc("moat_reconciler_last_apply_seconds", "How long the last batch took to reach every backend."),
		repairs: desc("moat_kernel_repairs_total",
			"Kernel entries a verify pass (periodic or moat verify) found missing, extra or with another expiry, and repaired.", "backend", "kind"),
	}
}

func (u *reconcilerUpdater) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	st := u.rec.Stats()
	counter(ch, u.batches, st.Batches)
	counter(ch, u.applyErrors, st.ApplyErrors)
	counter(ch, u.refused, st.Refused)
	counter(ch, u.drift, st.Drift)
	gauge(ch, u.entries, float64(st.Entries))
	gauge(ch, u.lastApply, st.LastApply.Seconds())
	for _, r := range st.Repairs {
		counter(ch, u.repairs, r.Count, r.Backend, r.Kind)
	}
	return nil
}

// kernelDescs are shared by both backends so the element gauge is one
// metric with a backend label.
type kernelDescs struct {
	elements *prometheus.Desc
}

func newKernelDescs() *kernelDescs {
	return &kernelDescs{elements: desc("moat_kernel_elements",
		"Elements the kernel holds in a set (nftables) or map (XDP), as last counted from the kernel itself (refreshed at most every 30s); a range counts once.", "backend", "set")}
}

func (k *kernelDescs) sendElements(ch chan<- prometheus.Metric, backend string, el map[string]int) {
	for set, n := range el {
		gauge(ch, k.elements, float64(n), backend, set)
	}
}

type nftUpdater struct {
	nft            NFTables
	k              *kernelDescs
	elems          *elementCache
	packets, bytes *prometheus.Desc
}

func newNFTUpdater(n NFTables, k *kernelDescs, every time.Duration) *nftUpdater {
	return &nftUpdater{
		nft:     n,
		k:       k,
		elems:   newElementCache(n.Elements, every),
		packets: desc("moat_nft_dropped_packets_total", "Packets dropped by moat's nftables rule for a set.", "set"),
		bytes:   desc("moat_nft_dropped_bytes_total", "Bytes dropped by moat's nftables rule for a set.", "set"),
	}
}

func (u *nftUpdater) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	cs, err := u.nft.DropCounters(ctx)
	if err != nil {
		return fmt.Errorf("nftables counters: %w", err)
	}
	for set, c := range cs {
		counter(ch, u.packets, c.Packets, set)
		counter(ch, u.bytes, c.Bytes, set)
	}
	el, err := u.elems.get(ctx)
	if err != nil {
		return fmt.Errorf("nftables elements: %w", err)
	}
	u.k.sendElements(ch, "nftables", el)
	return nil
}

type xdpUpdater struct {
	xdp                                    XDP
	k                                      *kernelDescs
	elems                                  *elementCache
	dropped, droppedBytes, passed, expired *prometheus.Desc
}

func newXDPUpdater(x XDP, k *kernelDescs, every time.Duration) *xdpUpdater {
	return &xdpUpdater{
		xdp:          x,
		k:            k,
		elems:        newElementCache(x.Elements, every),
		dropped:      desc("moat_xdp_dropped_packets_total", "Packets dropped by the XDP program, summed over CPUs."),
		droppedBytes: desc("moat_xdp_dropped_bytes_total", "Bytes dropped by the XDP program, summed over CPUs."),
		passed:       desc("moat_xdp_passed_packets_total", "Packets the XDP program let through, summed over CPUs."),
		expired:      desc("moat_xdp_expired_hits_total", "Packets that matched an expired ban still in a map (and passed)."),
	}
}

func (u *xdpUpdater) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	c, err := u.xdp.XDPCounters()
	if err != nil {
		return fmt.Errorf("xdp counters: %w", err)
	}
	counter(ch, u.dropped, c.DroppedPackets)
	counter(ch, u.droppedBytes, c.DroppedBytes)
	counter(ch, u.passed, c.PassedPackets)
	counter(ch, u.expired, c.ExpiredHits)
	el, err := u.elems.get(ctx)
	if err != nil {
		return fmt.Errorf("xdp elements: %w", err)
	}
	u.k.sendElements(ch, "xdp", el)
	return nil
}

// decisionsUpdater: active decisions, alerts and decisions created.
type decisionsUpdater struct {
	dec                       Decisions
	active, alerts, decisions *prometheus.Desc
	storeErrors, pendingStore *prometheus.Desc
}

func newDecisionsUpdater(d Decisions) *decisionsUpdater {
	return &decisionsUpdater{
		dec:       d,
		active:    desc("moat_active_decisions", "Decisions in force now.", "origin"),
		alerts:    desc("moat_alerts_total", "Alerts created since start.", "scenario", "origin"),
		decisions: desc("moat_decisions_total", "Decisions created since start.", "scenario", "origin"),
		storeErrors: desc("moat_store_errors_total",
			"Failed store writes of bans already enforced since start; each is retried."),
		pendingStore: desc("moat_decisions_pending_store",
			"Alerts whose bans are enforced and whose store write has not succeeded yet."),
	}
}

func (u *decisionsUpdater) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	dc, err := u.dec.DecisionCounts(ctx)
	if err != nil {
		return fmt.Errorf("decision counts: %w", err)
	}
	for o, n := range dc.Active {
		gauge(ch, u.active, float64(n), string(o))
	}
	sendCreated(ch, u.alerts, dc.Alerts)
	sendCreated(ch, u.decisions, dc.Decisions)
	counter(ch, u.storeErrors, dc.StoreErrors)
	gauge(ch, u.pendingStore, float64(dc.PendingStore))
	return nil
}

// sendCreated sums duplicate (scenario, origin) pairs: duplicate series
// would fail the whole scrape.
func sendCreated(ch chan<- prometheus.Metric, d *prometheus.Desc, cs []CreatedStat) {
	type key struct {
		scenario string
		origin   model.Origin
	}
	sum := map[key]uint64{}
	var order []key
	for _, c := range cs {
		k := key{c.Scenario, c.Origin}
		if _, ok := sum[k]; !ok {
			order = append(order, k)
		}
		sum[k] += c.Count
	}
	for _, k := range order {
		counter(ch, d, sum[k], k.scenario, string(k.origin))
	}
}
