package metrics

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/model"
)

//go:embed status.html
var statusFS embed.FS

// Limits of the status page's lists: it is a glance, not a console.
const (
	statusAlerts = 25
	statusTop    = 10
	// topSourcesWindow is how many recent alerts the top attackers are
	// counted over.
	topSourcesWindow = 500
)

func parseStatusTemplate() (*template.Template, error) {
	t, err := template.New("status.html").Funcs(template.FuncMap{
		"num":     FormatCount,
		"seconds": FormatSeconds,
		"percent": FormatPercent,
		"addf":    func(a, b float64) float64 { return a + b },
		"until": func(now, t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.Sub(now).Round(time.Second).String()
		},
		"ts": func(loc *time.Location, t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.In(loc).Format("2006-01-02 15:04:05")
		},
	}).ParseFS(statusFS, "status.html")
	if err != nil {
		return nil, fmt.Errorf("status page template: %w", err)
	}
	return t, nil
}

type statusPage struct {
	s    *Server
	tmpl *template.Template
	// now and loc are the clock and the zone times are shown in; tests
	// fix both.
	now func() time.Time
	loc *time.Location
}

type statusData struct {
	Now          time.Time
	Loc          *time.Location
	Query        string
	QueryErr     string
	Summary      Summary
	ActiveTotal  float64
	Decisions    []model.Decision
	DecisionsErr string
	Pager        pager
	// Truncated is set when rows exist beyond the last page offered.
	Truncated    bool
	Alerts       []model.Alert
	AlertsErr    string
	TopScenarios []barRow
	TopSources   []barRow
	GeoEnabled   bool
	Countries    []barRow
	ASNs         []barRow
	Ranges       []rangeLink
	Range        string
	BansChart    chart
	AlertsChart  chart
	LatencyChart chart
	Notify       []notifyRow
	Actions      []actionRow
	DropsPerSec  float64
	DropsKnown   bool
	HasStatus    bool
	HasTrend     bool
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	now := p.now()
	d := statusData{Now: now, Loc: p.loc, Query: strings.TrimSpace(q.Get("ip")), Pager: newPager(q.Get("page"))}
	code := http.StatusOK

	var filter DecisionFilter
	filter.Limit = d.Pager.limit()
	if d.Query != "" {
		ip, err := netip.ParseAddr(d.Query)
		if err != nil {
			d.QueryErr = fmt.Sprintf("%q is not an IP address", d.Query)
			code = http.StatusBadRequest
		}
		filter.IP = ip.Unmap()
	}

	fams, err := p.s.reg.Gather()
	if err != nil && len(fams) == 0 {
		http.Error(w, fmt.Sprintf("gather metrics: %v", err), http.StatusInternalServerError)
		return
	}
	byName := Families(fams)
	d.Summary = Summarize(byName)
	for _, r := range d.Summary.Decisions {
		d.ActiveTotal += r.Active
	}
	d.TopScenarios = scenarioBars(d.Summary.Scenarios, statusTop)
	d.DropsPerSec, d.DropsKnown = p.s.drops.rate()
	d.Notify = notifyRows(byName)
	d.Actions = actionRows(byName)
	d.LatencyChart = histogramChart("chart-latency", "detection to kernel latency", histBuckets(byName[LatencyName]))

	rng := findRange(q.Get("range"))
	d.Range = rng.Name
	for _, x := range trendRanges {
		d.Ranges = append(d.Ranges, rangeLink{Name: x.Name, Active: x.Name == rng.Name})
	}
	d.HasTrend = p.s.cfg.Decisions != nil
	ts := p.s.trend.series(now, rng.Steps, rng.Step)
	d.BansChart = stackedChart("chart-bans", "bans by scenario", ts.Bans, ts.Start, ts.Step, p.loc)
	d.AlertsChart = stackedChart("chart-alerts", "alerts by scenario", ts.Alerts, ts.Start, ts.Step, p.loc)

	if st := p.s.cfg.Status; st != nil {
		d.HasStatus = true
		if d.QueryErr == "" {
			ds, err := st.ActiveDecisions(ctx, filter)
			if err != nil {
				d.DecisionsErr = err.Error()
			}
			var more bool
			d.Decisions, more = d.Pager.cut(ds)
			d.Truncated = more && d.Pager.Next == 0
		}
		as, err := st.RecentAlerts(ctx, topSourcesWindow)
		if err != nil {
			d.AlertsErr = err.Error()
		}
		d.TopSources = attackerBars(topAttackers(as, statusTop))
		if g := p.s.cfg.Geo; g != nil {
			d.GeoEnabled = true
			d.Countries, d.ASNs = geoBars(as, g, statusTop)
		}
		if len(as) > statusAlerts {
			as = as[:statusAlerts]
		}
		d.Alerts = as
	}

	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, d); err != nil {
		http.Error(w, fmt.Sprintf("render status page: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page is self-contained: nothing may load from elsewhere, and no
	// script runs (charts are inline SVG drawn here).
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

type attacker struct {
	Value     string
	Alerts    int
	Scenarios string
}

// topAttackers counts recent alerts per source value.
func topAttackers(as []model.Alert, n int) []attacker {
	type acc struct {
		alerts    int
		scenarios map[string]bool
	}
	by := map[string]*acc{}
	for _, a := range as {
		v := a.Value
		if v == "" && a.Source.IsValid() {
			v = a.Source.String()
		}
		if v == "" {
			continue
		}
		x := by[v]
		if x == nil {
			x = &acc{scenarios: map[string]bool{}}
			by[v] = x
		}
		x.alerts++
		x.scenarios[a.Scenario] = true
	}
	out := make([]attacker, 0, len(by))
	for v, x := range by {
		sc := make([]string, 0, len(x.scenarios))
		for s := range x.scenarios {
			sc = append(sc, s)
		}
		sort.Strings(sc)
		out = append(out, attacker{Value: v, Alerts: x.alerts, Scenarios: strings.Join(sc, ", ")})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alerts != out[j].Alerts {
			return out[i].Alerts > out[j].Alerts
		}
		return out[i].Value < out[j].Value
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
