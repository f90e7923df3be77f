package metrics

import (
	"math"
	"net/netip"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/moatsec/moat/internal/model"
)

// GeoInfo is where an address is registered.
type GeoInfo struct {
	// Country is an ISO 3166-1 alpha-2 code, "" when unknown.
	Country string
	// ASN is the autonomous system number, 0 when unknown; ASOrg its name.
	ASN   uint32
	ASOrg string
}

// GeoResolver looks addresses up in a GeoIP database. The status page
// groups recent attackers by country and AS through it when one is set
// (Config.Geo); without one those panels say so. It is called once per
// distinct source of the recent alerts on every page load, so it must
// answer from memory.
type GeoResolver interface {
	Lookup(addr netip.Addr) (GeoInfo, bool)
}

// trendRange is one span the charts can show.
type trendRange struct {
	Name  string
	Steps int
	Step  time.Duration
}

// trendRanges are the spans offered, the first being the default. Each
// fits in the ring and keeps bars wide enough to read on a phone.
var trendRanges = []trendRange{
	{"24h", 96, 15 * time.Minute},
	{"6h", 72, 5 * time.Minute},
	{"1h", 60, time.Minute},
}

func findRange(name string) trendRange {
	for _, r := range trendRanges {
		if r.Name == name {
			return r
		}
	}
	return trendRanges[0]
}

type rangeLink struct {
	Name   string
	Active bool
}

// barRow is one line of a ranked list, with its share of the first line
// for the bar drawn behind it.
type barRow struct {
	Name   string
	Count  float64
	Pct    float64
	Detail string
}

// bars ranks rows as given and sizes their bars against the largest.
func bars(rows []barRow) []barRow {
	var top float64
	for _, r := range rows {
		top = math.Max(top, r.Count)
	}
	for i := range rows {
		if top > 0 {
			rows[i].Pct = math.Round(1000*rows[i].Count/top) / 10
		}
	}
	return rows
}

func scenarioBars(rows []ScenarioRow, n int) []barRow {
	var out []barRow
	for _, r := range rows {
		if r.Alerts == 0 && r.Decisions == 0 {
			continue
		}
		out = append(out, barRow{Name: r.Name, Count: r.Alerts,
			Detail: FormatCount(r.Decisions) + " decisions, " + FormatCount(r.Overflows) + " overflows"})
	}
	if len(out) > n {
		out = out[:n]
	}
	return bars(out)
}

func attackerBars(as []attacker) []barRow {
	out := make([]barRow, len(as))
	for i, a := range as {
		out[i] = barRow{Name: a.Value, Count: float64(a.Alerts), Detail: a.Scenarios}
	}
	return bars(out)
}

// geoBars counts the recent alerts by the country and by the AS of their
// source.
func geoBars(as []model.Alert, g GeoResolver, n int) (countries, asns []barRow) {
	byCountry, byAS := map[string]float64{}, map[string]float64{}
	for _, a := range as {
		if !a.Source.IsValid() {
			continue
		}
		info, ok := g.Lookup(a.Source.Addr())
		if !ok {
			continue
		}
		if info.Country != "" {
			byCountry[info.Country]++
		}
		if info.ASN != 0 {
			name := "AS" + strconv.FormatUint(uint64(info.ASN), 10)
			if info.ASOrg != "" {
				name += " " + info.ASOrg
			}
			byAS[name]++
		}
	}
	return rankCounts(byCountry, n), rankCounts(byAS, n)
}

func rankCounts(m map[string]float64, n int) []barRow {
	out := make([]barRow, 0, len(m))
	for k, v := range m {
		out = append(out, barRow{Name: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > n {
		out = out[:n]
	}
	return bars(out)
}

// notifyRow is one notification channel's health.
type notifyRow struct {
	Channel, Kind         string
	Sent, Failed, Dropped float64
	Queued                float64
	Health                string // "ok", "degraded" or "failing"
}

// notifyRows reads the channels' health from the scrape, where
// NotifyCollector put their counters. A channel that failed every message
// it tried is failing; one that failed or dropped some is degraded.
func notifyRows(fams map[string]*dto.MetricFamily) []notifyRow {
	by := map[[2]string]*notifyRow{}
	get := func(l map[string]string) *notifyRow {
		return row(by, [2]string{l["channel"], l["kind"]}, func() *notifyRow {
			return &notifyRow{Channel: l["channel"], Kind: l["kind"]}
		})
	}
	for _, f := range []struct {
		name string
		set  func(r *notifyRow, v float64)
	}{
		{"moat_notification_sent_total", func(r *notifyRow, v float64) { r.Sent = v }},
		{"moat_notification_failed_total", func(r *notifyRow, v float64) { r.Failed = v }},
		{"moat_notification_dropped_total", func(r *notifyRow, v float64) { r.Dropped = v }},
		{"moat_notification_queue_length", func(r *notifyRow, v float64) { r.Queued = v }},
	} {
		for _, x := range each(fams, f.name) {
			f.set(get(x.labels), x.value)
		}
	}
	out := sortedRows(by, func(a, b notifyRow) bool { return a.Channel < b.Channel })
	for i := range out {
		out[i].Health = health(out[i].Sent, out[i].Failed, out[i].Dropped)
	}
	return out
}

// histBuckets merges a histogram family's series into cumulative buckets
// sorted by bound, ending with +Inf.
func histBuckets(f *dto.MetricFamily) []Bucket {
	if f == nil {
		return nil
	}
	cum := map[float64]float64{}
	var count float64
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		count += float64(h.GetSampleCount())
		for _, b := range h.GetBucket() {
			cum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
	}
	cum[math.Inf(1)] = count
	out := make([]Bucket, 0, len(cum))
	for ub, c := range cum {
		out = append(out, Bucket{UpperBound: ub, Count: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpperBound < out[j].UpperBound })
	return out
}

// pager is the decision table's page: the store is asked for the rows up
// to the end of the page, so deep pages cost more and are capped.
type pager struct {
	Page, PerPage, MaxPages int
	// Prev and Next are 0 when there is no such page.
	Prev, Next int
}

const (
	decisionsPerPage = 50
	decisionsPages   = 20
)

func newPager(q string) pager {
	p := pager{Page: 1, PerPage: decisionsPerPage, MaxPages: decisionsPages}
	if n, err := strconv.Atoi(q); err == nil && n >= 1 {
		p.Page = min(n, p.MaxPages)
	}
	return p
}

// limit is how many rows to ask for: through the page and one more, to
// know whether a next page exists.
func (p pager) limit() int { return p.Page*p.PerPage + 1 }

// cut returns the page's rows and sets Prev and Next.
func (p *pager) cut(ds []model.Decision) (page []model.Decision, more bool) {
	lo := (p.Page - 1) * p.PerPage
	if lo > len(ds) {
		lo = len(ds)
	}
	hi := min(lo+p.PerPage, len(ds))
	more = len(ds) > hi
	if p.Page > 1 {
		p.Prev = p.Page - 1
	}
	if more && p.Page < p.MaxPages {
		p.Next = p.Page + 1
	}
	return ds[lo:hi], more
}
