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
	statusDecisions = 200
	statusAlerts    = 25
	statusTop       = 10
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
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.Local().Format("2006-01-02 15:04:05")
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
}

type statusData struct {
	Now          time.Time
	Query        string
	QueryErr     string
	Summary      Summary
	ActiveTotal  float64
	Decisions    []model.Decision
	DecisionsErr string
	Truncated    bool
	Alerts       []model.Alert
	AlertsErr    string
	TopScenarios []ScenarioRow
	TopSources   []attacker
	DropsPerSec  float64
	DropsKnown   bool
	HasStatus    bool
}

type attacker struct {
	Value     string
	Alerts    int
	Scenarios string
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := statusData{Now: time.Now(), Query: strings.TrimSpace(r.URL.Query().Get("ip"))}
	code := http.StatusOK

	var filter DecisionFilter
	filter.Limit = statusDecisions + 1
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
	d.Summary = Summarize(Families(fams))
	for _, r := range d.Summary.Decisions {
		d.ActiveTotal += r.Active
	}
	d.TopScenarios = d.Summary.Scenarios
	if len(d.TopScenarios) > statusTop {
		d.TopScenarios = d.TopScenarios[:statusTop]
	}
	d.DropsPerSec, d.DropsKnown = p.s.drops.rate()

	if st := p.s.cfg.Status; st != nil {
		d.HasStatus = true
		if d.QueryErr == "" {
			ds, err := st.ActiveDecisions(ctx, filter)
			if err != nil {
				d.DecisionsErr = err.Error()
			}
			if len(ds) > statusDecisions {
				ds, d.Truncated = ds[:statusDecisions], true
			}
			d.Decisions = ds
		}
		as, err := st.RecentAlerts(ctx, topSourcesWindow)
		if err != nil {
			d.AlertsErr = err.Error()
		}
		d.TopSources = topAttackers(as, statusTop)
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
	// The page is self-contained: nothing may load from elsewhere.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
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
