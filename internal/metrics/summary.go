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
	b := &summaryBuilder{
		fams:      fams,
		sources:   map[string]*SourceRow{},
		parsers:   map[parserKey]*ParserRow{},
		scenarios: map[string]*ScenarioRow{},
		decisions: map[string]*DecisionRow{},
		kernel:    map[kernelKey]*KernelRow{},
	}
	for _, f := range summaryFeeds {
		f.feed(b, f.family)
	}
	return b.summary()
}

// summaryFeeds is which metric families feed which figures of a Summary,
// in the order they are read: where two series or families feed one
// figure, the later one overwrites it or adds to it, as its feed says.
var summaryFeeds = []struct {
	family string
	feed   func(b *summaryBuilder, family string)
}{
	{"moat_source_lines_total", toSource(func(r *SourceRow, v float64) { r.Lines = v })},
	{"moat_source_bytes_total", toSource(func(r *SourceRow, v float64) { r.Bytes = v })},
	{"moat_source_errors_total", toSource(func(r *SourceRow, v float64) { r.Errors = v })},
	{"moat_source_cut_lines_total", toSource(func(r *SourceRow, v float64) { r.CutLines = v })},
	{"moat_source_lag_seconds", toSource(func(r *SourceRow, v float64) { r.LagSeconds = v })},
	{"moat_source_up", toSource(func(r *SourceRow, v float64) { r.Up = v == 1 })},

	{"moat_engine_lines_total", toTotal(func(s *Summary, v float64) { s.Engine.Lines = v })},
	{"moat_engine_lines_parsed_total", toTotal(func(s *Summary, v float64) { s.Engine.Parsed = v })},
	{"moat_engine_lines_unparsed_total", toTotal(func(s *Summary, v float64) { s.Engine.Unparsed = v })},
	{"moat_engine_lines_whitelisted_total", toTotal(func(s *Summary, v float64) { s.Engine.Whitelisted = v })},

	{"moat_parser_hits_total", toParser(func(r *ParserRow, v float64) { r.Hits = v })},
	{"moat_parser_lines_parsed_total", toParser(func(r *ParserRow, v float64) { r.Parsed = v })},
	{"moat_parser_lines_unparsed_total", toParser(func(r *ParserRow, v float64) { r.Unparsed = v })},

	{"moat_scenario_pours_total", toScenario(func(r *ScenarioRow, v float64) { r.Pours = v })},
	{"moat_scenario_overflows_total", toScenario(func(r *ScenarioRow, v float64) { r.Overflows = v })},
	{"moat_scenario_buckets", toScenario(func(r *ScenarioRow, v float64) { r.Buckets = v })},
	{"moat_scenario_evictions_total", toScenario(func(r *ScenarioRow, v float64) { r.Evictions = v })},
	{"moat_alerts_total", toScenario(func(r *ScenarioRow, v float64) { r.Alerts += v })},
	{"moat_decisions_total", toScenario(func(r *ScenarioRow, v float64) { r.Decisions += v })},

	{"moat_active_decisions", toDecision(func(r *DecisionRow, v float64) { r.Active = v })},
	{"moat_decisions_total", toDecision(func(r *DecisionRow, v float64) { r.Created += v })},

	{"moat_kernel_elements", toKernel("", func(r *KernelRow, v float64) { r.Elements = v })},
	{"moat_nft_dropped_packets_total", toKernel("nftables", func(r *KernelRow, v float64) { r.Packets = v })},
	{"moat_nft_dropped_bytes_total", toKernel("nftables", func(r *KernelRow, v float64) { r.Bytes = v })},
	{"moat_xdp_dropped_packets_total", toXDPProgram("moat_xdp_dropped_bytes_total")},

	{"moat_nft_dropped_packets_total", toTotal(func(s *Summary, v float64) { s.Drops.Packets += v })},
	{"moat_xdp_dropped_packets_total", toTotal(func(s *Summary, v float64) { s.Drops.Packets += v })},
	{"moat_nft_dropped_bytes_total", toTotal(func(s *Summary, v float64) { s.Drops.Bytes += v })},
	{"moat_xdp_dropped_bytes_total", toTotal(func(s *Summary, v float64) { s.Drops.Bytes += v })},
	{"moat_xdp_passed_packets_total", toTotal(func(s *Summary, v float64) { s.Drops.XDPPassed = v })},

	{"moat_reconciler_batches_total", toTotal(func(s *Summary, v float64) { s.Reconciler.Batches = v })},
	{"moat_reconciler_apply_errors_total", toTotal(func(s *Summary, v float64) { s.Reconciler.ApplyErrors = v })},
	{"moat_reconciler_refused_total", toTotal(func(s *Summary, v float64) { s.Reconciler.Refused = v })},
	{"moat_reconciler_drift_total", toTotal(func(s *Summary, v float64) { s.Reconciler.Drift = v })},
	{"moat_reconciler_entries", toTotal(func(s *Summary, v float64) { s.Reconciler.Entries = v })},
	{"moat_reconciler_last_apply_seconds", toTotal(func(s *Summary, v float64) { s.Reconciler.LastApplySeconds = v })},
}

type parserKey struct{ stage, parser string }

type kernelKey struct{ backend, set string }

// summaryBuilder holds a Summary's figures and its rows by key while the
// feeds fill them in.
type summaryBuilder struct {
	fams      map[string]*dto.MetricFamily
	s         Summary
	sources   map[string]*SourceRow
	parsers   map[parserKey]*ParserRow
	scenarios map[string]*ScenarioRow
	decisions map[string]*DecisionRow
	kernel    map[kernelKey]*KernelRow
}

// toTotal feeds a figure the family's total over all its series.
func toTotal(set func(s *Summary, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) { set(&b.s, total(b.fams, family)) }
}

// toSource feeds each series to the row of its source; the first series
// of a source names its kind.
func toSource(set func(r *SourceRow, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		for _, x := range each(b.fams, family) {
			name := x.labels["source"]
			set(row(b.sources, name, func() *SourceRow { return &SourceRow{Name: name, Kind: x.labels["kind"]} }), x.value)
		}
	}
}

func toParser(set func(r *ParserRow, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		for _, x := range each(b.fams, family) {
			k := parserKey{x.labels["stage"], x.labels["parser"]}
			set(row(b.parsers, k, func() *ParserRow { return &ParserRow{Stage: k.stage, Parser: k.parser} }), x.value)
		}
	}
}

func toScenario(set func(r *ScenarioRow, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		for _, x := range each(b.fams, family) {
			name := x.labels["scenario"]
			if name == "" {
				// Decisions added by hand or imported carry no scenario.
				name = "(none)"
			}
			set(row(b.scenarios, name, func() *ScenarioRow { return &ScenarioRow{Name: name} }), x.value)
		}
	}
}

func toDecision(set func(r *DecisionRow, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		for _, x := range each(b.fams, family) {
			o := x.labels["origin"]
			set(row(b.decisions, o, func() *DecisionRow { return &DecisionRow{Origin: o} }), x.value)
		}
	}
}

// toKernel feeds each series to the row of its set, in backend, or in the
// backend its labels name when backend is empty.
func toKernel(backend string, set func(r *KernelRow, v float64)) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		for _, x := range each(b.fams, family) {
			k := kernelKey{backend, x.labels["set"]}
			if backend == "" {
				k.backend = x.labels["backend"]
			}
			set(row(b.kernel, k, func() *KernelRow { return &KernelRow{Backend: k.backend, Set: k.set} }), x.value)
		}
	}
}

// toXDPProgram gives the XDP program one kernel row, with the totals of its
// packet family and of bytesFamily, when the packet family was scraped:
// XDP drops are counted per program, not per set.
func toXDPProgram(bytesFamily string) func(*summaryBuilder, string) {
	return func(b *summaryBuilder, family string) {
		if _, ok := b.fams[family]; !ok {
			return
		}
		r := row(b.kernel, kernelKey{"xdp", "(program)"}, func() *KernelRow { return &KernelRow{Backend: "xdp", Set: "(program)"} })
		r.Packets = total(b.fams, family)
		r.Bytes = total(b.fams, bytesFamily)
	}
}

// row is m's row for k, made by create the first time.
func row[K comparable, R any](m map[K]*R, k K, create func() *R) *R {
	r := m[k]
	if r == nil {
		r = create()
		m[k] = r
	}
	return r
}

// sortedRows lists m's rows ordered by less; nil when there are none.
func sortedRows[K comparable, R any](m map[K]*R, less func(a, b R) bool) []R {
	var out []R
	for _, r := range m {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}

// summary orders the rows, busiest first, and adds the latency estimate.
func (b *summaryBuilder) summary() Summary {
	s := b.s
	s.Sources = sortedRows(b.sources, func(a, b SourceRow) bool {
		if a.Lines != b.Lines {
			return a.Lines > b.Lines
		}
		return a.Name < b.Name
	})
	s.Parsers = sortedRows(b.parsers, func(a, b ParserRow) bool {
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		if a.Hits != b.Hits {
			return a.Hits > b.Hits
		}
		return a.Parser < b.Parser
	})
	s.Scenarios = sortedRows(b.scenarios, func(a, b ScenarioRow) bool {
		if a.Alerts != b.Alerts {
			return a.Alerts > b.Alerts
		}
		if a.Pours != b.Pours {
			return a.Pours > b.Pours
		}
		return a.Name < b.Name
	})
	s.Decisions = sortedRows(b.decisions, func(a, b DecisionRow) bool {
		if a.Active != b.Active {
			return a.Active > b.Active
		}
		return a.Origin < b.Origin
	})
	s.Kernel = sortedRows(b.kernel, func(a, b KernelRow) bool {
		if a.Backend != b.Backend {
			return a.Backend < b.Backend
		}
		return a.Set < b.Set
	})
	s.Latency = latencyRow(b.fams[LatencyName])
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
