package metrics

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
)

// Summary is a scrape condensed into the tables the status page shows and
// `moat metrics` prints (cmd/moat renders them; the daemon's status page
// needs the same figures, so they are computed here).
type Summary struct {
	Sources    []SourceRow   `json:"sources"`
	Engine     EngineRow     `json:"engine"`
	Parsers    []ParserRow   `json:"parsers"`
	Scenarios  []ScenarioRow `json:"scenarios"`
	Decisions  []DecisionRow `json:"decisions"`
	Kernel     []KernelRow   `json:"kernel"`
	Drops      DropsRow      `json:"drops"`
	Reconciler ReconcilerRow `json:"reconciler"`
	Latency    LatencyRow    `json:"latency"`
}

// SourceRow is one acquisition source.
type SourceRow struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	Lines      float64 `json:"lines"`
	Bytes      float64 `json:"bytes"`
	Errors     float64 `json:"errors"`
	CutLines   float64 `json:"cut_lines"`
	LagSeconds float64 `json:"lag_seconds"`
	Up         bool    `json:"up"`
}

// EngineRow is the engine's line totals.
type EngineRow struct {
	Lines       float64 `json:"lines"`
	Parsed      float64 `json:"parsed"`
	Unparsed    float64 `json:"unparsed"`
	Whitelisted float64 `json:"whitelisted"`
}

// ParserRow is one parser node.
type ParserRow struct {
	Stage    string  `json:"stage"`
	Parser   string  `json:"parser"`
	Hits     float64 `json:"hits"`
	Parsed   float64 `json:"parsed"`
	Unparsed float64 `json:"unparsed"`
}

// ScenarioRow is one scenario, with the alerts and decisions it created.
type ScenarioRow struct {
	Name      string  `json:"name"`
	Pours     float64 `json:"pours"`
	Overflows float64 `json:"overflows"`
	Buckets   float64 `json:"buckets"`
	Evictions float64 `json:"evictions"`
	Alerts    float64 `json:"alerts"`
	Decisions float64 `json:"decisions"`
}

// DecisionRow is one origin: decisions active now and created since start.
type DecisionRow struct {
	Origin  string  `json:"origin"`
	Active  float64 `json:"active"`
	Created float64 `json:"created"`
}

// KernelRow is one nftables set or XDP map.
type KernelRow struct {
	Backend  string  `json:"backend"`
	Set      string  `json:"set"`
	Elements float64 `json:"elements"`
	Packets  float64 `json:"dropped_packets"`
	Bytes    float64 `json:"dropped_bytes"`
}

// DropsRow sums the packets dropped by every backend.
type DropsRow struct {
	Packets float64 `json:"packets"`
	Bytes   float64 `json:"bytes"`
	// XDPPassed counts packets the XDP program let through.
	XDPPassed float64 `json:"xdp_passed"`
}

// ReconcilerRow is the reconciler's counters.
type ReconcilerRow struct {
	Batches          float64 `json:"batches"`
	ApplyErrors      float64 `json:"apply_errors"`
	Refused          float64 `json:"refused"`
	Drift            float64 `json:"drift"`
	Entries          float64 `json:"entries"`
	LastApplySeconds float64 `json:"last_apply_seconds"`
}

// LatencyRow estimates detection-to-kernel quantiles from the histogram the
// way PromQL's histogram_quantile does. Quantiles are NaN with no samples.
type LatencyRow struct {
	Count      float64 `json:"count"`
	SumSeconds float64 `json:"sum_seconds"`
	P50        float64 `json:"p50_seconds"`
	P90        float64 `json:"p90_seconds"`
	P99        float64 `json:"p99_seconds"`
}

// Families indexes gathered families by name.
func Families(fs []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := make(map[string]*dto.MetricFamily, len(fs))
	for _, f := range fs {
		out[f.GetName()] = f
	}
	return out
}

type series struct {
	labels map[string]string
	value  float64
}

func each(fams map[string]*dto.MetricFamily, name string) []series {
	f := fams[name]
	if f == nil {
		return nil
	}
	out := make([]series, 0, len(f.GetMetric()))
	for _, m := range f.GetMetric() {
		l := make(map[string]string, len(m.GetLabel()))
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Untyped != nil:
			v = m.GetUntyped().GetValue()
		default:
			continue
		}
		out = append(out, series{l, v})
	}
	return out
}

func total(fams map[string]*dto.MetricFamily, name string) float64 {
	var t float64
	for _, s := range each(fams, name) {
		t += s.value
	}
	return t
}

// Summarize condenses metric families (parsed or gathered) into a Summary.
// Rows are sorted by their busiest figure, names breaking ties.
func Summarize(fams map[string]*dto.MetricFamily) Summary {
	var s Summary

	src := map[string]*SourceRow{}
	srcRow := func(l map[string]string) *SourceRow {
		r := src[l["source"]]
		if r == nil {
			r = &SourceRow{Name: l["source"], Kind: l["kind"]}
			src[l["source"]] = r
		}
		return r
	}
	for _, x := range each(fams, "moat_source_lines_total") {
		srcRow(x.labels).Lines = x.value
	}
	for _, x := range each(fams, "moat_source_bytes_total") {
		srcRow(x.labels).Bytes = x.value
	}
	for _, x := range each(fams, "moat_source_errors_total") {
		srcRow(x.labels).Errors = x.value
	}
	for _, x := range each(fams, "moat_source_cut_lines_total") {
		srcRow(x.labels).CutLines = x.value
	}
	for _, x := range each(fams, "moat_source_lag_seconds") {
		srcRow(x.labels).LagSeconds = x.value
	}
	for _, x := range each(fams, "moat_source_up") {
		srcRow(x.labels).Up = x.value == 1
	}
	for _, r := range src {
		s.Sources = append(s.Sources, *r)
	}
	sort.Slice(s.Sources, func(i, j int) bool {
		a, b := s.Sources[i], s.Sources[j]
		if a.Lines != b.Lines {
			return a.Lines > b.Lines
		}
		return a.Name < b.Name
	})

	s.Engine = EngineRow{
		Lines:       total(fams, "moat_engine_lines_total"),
		Parsed:      total(fams, "moat_engine_lines_parsed_total"),
		Unparsed:    total(fams, "moat_engine_lines_unparsed_total"),
		Whitelisted: total(fams, "moat_engine_lines_whitelisted_total"),
	}

	type pkey struct{ stage, parser string }
	par := map[pkey]*ParserRow{}
	parRow := func(l map[string]string) *ParserRow {
		k := pkey{l["stage"], l["parser"]}
		r := par[k]
		if r == nil {
			r = &ParserRow{Stage: k.stage, Parser: k.parser}
			par[k] = r
		}
		return r
	}
	for _, x := range each(fams, "moat_parser_hits_total") {
		parRow(x.labels).Hits = x.value
	}
	for _, x := range each(fams, "moat_parser_lines_parsed_total") {
		parRow(x.labels).Parsed = x.value
	}
	for _, x := range each(fams, "moat_parser_lines_unparsed_total") {
		parRow(x.labels).Unparsed = x.value
	}
	for _, r := range par {
		s.Parsers = append(s.Parsers, *r)
	}
	sort.Slice(s.Parsers, func(i, j int) bool {
		a, b := s.Parsers[i], s.Parsers[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		if a.Hits != b.Hits {
			return a.Hits > b.Hits
		}
		return a.Parser < b.Parser
	})

	sc := map[string]*ScenarioRow{}
	scRow := func(name string) *ScenarioRow {
		if name == "" {
			// Decisions added by hand or imported carry no scenario.
			name = "(none)"
		}
		r := sc[name]
		if r == nil {
			r = &ScenarioRow{Name: name}
			sc[name] = r
		}
		return r
	}
	for _, x := range each(fams, "moat_scenario_pours_total") {
		scRow(x.labels["scenario"]).Pours = x.value
	}
	for _, x := range each(fams, "moat_scenario_overflows_total") {
		scRow(x.labels["scenario"]).Overflows = x.value
	}
	for _, x := range each(fams, "moat_scenario_buckets") {
		scRow(x.labels["scenario"]).Buckets = x.value
	}
	for _, x := range each(fams, "moat_scenario_evictions_total") {
		scRow(x.labels["scenario"]).Evictions = x.value
	}
	for _, x := range each(fams, "moat_alerts_total") {
		scRow(x.labels["scenario"]).Alerts += x.value
	}
	for _, x := range each(fams, "moat_decisions_total") {
		scRow(x.labels["scenario"]).Decisions += x.value
	}
	for _, r := range sc {
		s.Scenarios = append(s.Scenarios, *r)
	}
	sort.Slice(s.Scenarios, func(i, j int) bool {
		a, b := s.Scenarios[i], s.Scenarios[j]
		if a.Alerts != b.Alerts {
			return a.Alerts > b.Alerts
		}
		if a.Pours != b.Pours {
			return a.Pours > b.Pours
		}
		return a.Name < b.Name
	})

	dec := map[string]*DecisionRow{}
	decRow := func(o string) *DecisionRow {
		r := dec[o]
		if r == nil {
			r = &DecisionRow{Origin: o}
			dec[o] = r
		}
		return r
	}
	for _, x := range each(fams, "moat_active_decisions") {
		decRow(x.labels["origin"]).Active = x.value
	}
	for _, x := range each(fams, "moat_decisions_total") {
		decRow(x.labels["origin"]).Created += x.value
	}
	for _, r := range dec {
		s.Decisions = append(s.Decisions, *r)
	}
	sort.Slice(s.Decisions, func(i, j int) bool {
		a, b := s.Decisions[i], s.Decisions[j]
		if a.Active != b.Active {
			return a.Active > b.Active
		}
		return a.Origin < b.Origin
	})

	type kkey struct{ backend, set string }
	ker := map[kkey]*KernelRow{}
	kRow := func(b, set string) *KernelRow {
		k := kkey{b, set}
		r := ker[k]
		if r == nil {
			r = &KernelRow{Backend: b, Set: set}
			ker[k] = r
		}
		return r
	}
	for _, x := range each(fams, "moat_kernel_elements") {
		kRow(x.labels["backend"], x.labels["set"]).Elements = x.value
	}
	for _, x := range each(fams, "moat_nft_dropped_packets_total") {
		kRow("nftables", x.labels["set"]).Packets = x.value
	}
	for _, x := range each(fams, "moat_nft_dropped_bytes_total") {
		kRow("nftables", x.labels["set"]).Bytes = x.value
	}
	if _, ok := fams["moat_xdp_dropped_packets_total"]; ok {
		r := kRow("xdp", "(program)")
		r.Packets = total(fams, "moat_xdp_dropped_packets_total")
		r.Bytes = total(fams, "moat_xdp_dropped_bytes_total")
	}
	for _, r := range ker {
		s.Kernel = append(s.Kernel, *r)
	}
	sort.Slice(s.Kernel, func(i, j int) bool {
		a, b := s.Kernel[i], s.Kernel[j]
		if a.Backend != b.Backend {
			return a.Backend < b.Backend
		}
		return a.Set < b.Set
	})

	s.Drops = DropsRow{
		Packets:   total(fams, "moat_nft_dropped_packets_total") + total(fams, "moat_xdp_dropped_packets_total"),
		Bytes:     total(fams, "moat_nft_dropped_bytes_total") + total(fams, "moat_xdp_dropped_bytes_total"),
		XDPPassed: total(fams, "moat_xdp_passed_packets_total"),
	}

	s.Reconciler = ReconcilerRow{
		Batches:          total(fams, "moat_reconciler_batches_total"),
		ApplyErrors:      total(fams, "moat_reconciler_apply_errors_total"),
		Refused:          total(fams, "moat_reconciler_refused_total"),
		Drift:            total(fams, "moat_reconciler_drift_total"),
		Entries:          total(fams, "moat_reconciler_entries"),
		LastApplySeconds: total(fams, "moat_reconciler_last_apply_seconds"),
	}

	s.Latency = latencyRow(fams[LatencyName])
	return s
}

func latencyRow(f *dto.MetricFamily) LatencyRow {
	r := LatencyRow{P50: math.NaN(), P90: math.NaN(), P99: math.NaN()}
	if f == nil {
		return r
	}
	// Merge every series (there is one, but a relabelled scrape may split
	// it); buckets share bounds.
	cum := map[float64]float64{}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		r.Count += float64(h.GetSampleCount())
		r.SumSeconds += h.GetSampleSum()
		for _, b := range h.GetBucket() {
			cum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
	}
	bs := make([]Bucket, 0, len(cum)+1)
	for ub, c := range cum {
		bs = append(bs, Bucket{UpperBound: ub, Count: c})
	}
	if _, ok := cum[math.Inf(1)]; !ok {
		bs = append(bs, Bucket{UpperBound: math.Inf(1), Count: r.Count})
	}
	r.P50 = Quantile(0.5, bs)
	r.P90 = Quantile(0.9, bs)
	r.P99 = Quantile(0.99, bs)
	return r
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound, Count float64
}

// Quantile estimates the q-quantile from cumulative buckets as PromQL's
// histogram_quantile does: linear interpolation inside the bucket the rank
// falls in, the highest finite bound if it falls in +Inf, NaN when empty.
func Quantile(q float64, buckets []Bucket) float64 {
	if len(buckets) == 0 || q < 0 || q > 1 {
		return math.NaN()
	}
	bs := append([]Bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].UpperBound < bs[j].UpperBound })
	if !math.IsInf(bs[len(bs)-1].UpperBound, 1) {
		return math.NaN()
	}
	n := bs[len(bs)-1].Count
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	i := sort.Search(len(bs)-1, func(i int) bool { return bs[i].Count >= rank })
	if i == len(bs)-1 {
		if len(bs) < 2 {
			return math.NaN()
		}
		return bs[len(bs)-2].UpperBound
	}
	if i == 0 && bs[0].UpperBound <= 0 {
		return bs[0].UpperBound
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].UpperBound, bs[i-1].Count
	}
	inBucket := bs[i].Count - below
	if inBucket == 0 {
		return bs[i].UpperBound
	}
	return lower + (bs[i].UpperBound-lower)*((rank-below)/inBucket)
}

// FormatCount prints a count without a fraction and a large one with a unit
// suffix, as the status page and `moat metrics` show it.
func FormatCount(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// FormatSeconds prints a duration in the unit that suits it.
func FormatSeconds(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case v < 1e-3:
		return fmt.Sprintf("%.0fµs", v*1e6)
	case v < 1:
		return fmt.Sprintf("%.2fms", v*1e3)
	}
	return fmt.Sprintf("%.2fs", v)
}

// FormatPercent prints part of whole as a percentage, "-" of nothing.
func FormatPercent(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

// MarshalJSON writes quantiles that have no samples as null: JSON has no NaN.
func (r LatencyRow) MarshalJSON() ([]byte, error) {
	opt := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		Count      float64  `json:"count"`
		SumSeconds float64  `json:"sum_seconds"`
		P50        *float64 `json:"p50_seconds"`
		P90        *float64 `json:"p90_seconds"`
		P99        *float64 `json:"p99_seconds"`
	}{r.Count, r.SumSeconds, opt(r.P50), opt(r.P90), opt(r.P99)})
}
