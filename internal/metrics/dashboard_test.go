package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/moatsec/moat/internal/model"
)

// dashNow is the fixed clock of the dashboard tests.
var dashNow = time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)

// fixedStatus answers the page's reads with fixed data.
type fixedStatus struct {
	decisions []model.Decision
	alerts    []model.Alert
	counts    DecisionCounts
}

func (f *fixedStatus) ActiveDecisions(_ context.Context, fl DecisionFilter) ([]model.Decision, error) {
	var out []model.Decision
	for _, d := range f.decisions {
		if fl.IP.IsValid() && !d.Value.Contains(fl.IP) {
			continue
		}
		if fl.Limit > 0 && len(out) == fl.Limit {
			break
		}
		out = append(out, d)
	}
	return out, nil
}

func (f *fixedStatus) RecentAlerts(_ context.Context, n int) ([]model.Alert, error) {
	return f.alerts[:min(n, len(f.alerts))], nil
}

func (f *fixedStatus) DecisionCounts(context.Context) (DecisionCounts, error) { return f.counts, nil }

type fixedNotify []NotifyStat

func (n fixedNotify) NotifyStats() []NotifyStat { return n }

type fixedActions []ActionStat

func (a fixedActions) ActionStats() []ActionStat { return a }

type fixedGeo map[netip.Addr]GeoInfo

func (g fixedGeo) Lookup(a netip.Addr) (GeoInfo, bool) {
	i, ok := g[a]
	return i, ok
}

// dashFixture is the data of a small attack: two scenarios ban at known
// minutes, a third only alerts, and one notification channel fails.
type dashFixture struct {
	status  *fixedStatus
	notify  fixedNotify
	actions fixedActions
	geo     GeoResolver
	// trend is what each scenario created, minutes before dashNow.
	trend []trendPoint
	// latencies are observed into the detection-to-kernel histogram.
	latencies map[time.Duration]int
}

type trendPoint struct {
	ago          int
	scenario     string
	alerts, bans uint64
}

const (
	scenSSH  = "crowdsecurity/ssh-bf"
	scenHTTP = "crowdsecurity/http-probing"
	scenScan = "crowdsecurity/port-scan"
)

func newDashFixture() dashFixture {
	fx := dashFixture{
		status: &fixedStatus{counts: DecisionCounts{
			Active:    map[model.Origin]int{model.OriginLocal: 118, model.OriginCLI: 2},
			Alerts:    created(scenSSH, 21, scenHTTP, 9, scenScan, 4),
			Decisions: created(scenSSH, 18, scenHTTP, 6, "", 2),
		}},
		notify: fixedNotify{
			{Name: "ops-webhook", Kind: "webhook", Sent: 12, Queued: 1},
			{Name: "mail", Kind: "email", Failed: 3},
			{Name: "audit", Kind: "file", Sent: 40, Dropped: 2},
		},
		actions: fixedActions{
			{Name: "abuse-report", Runs: map[string]uint64{"ok": 7, "exit": 1}, Exits: map[int]uint64{0: 7, 3: 1}, Seconds: 4},
			{Name: "switch-acl", Runs: map[string]uint64{"timeout": 2, "stopped": 1}, Queued: 3, Seconds: 60},
		},
		trend: []trendPoint{
			{ago: 2, scenario: scenSSH, alerts: 9, bans: 9},
			{ago: 5, scenario: scenSSH, alerts: 6, bans: 6},
			{ago: 5, scenario: scenHTTP, alerts: 3, bans: 2},
			{ago: 10, scenario: scenSSH, alerts: 3, bans: 3},
			{ago: 20, scenario: scenHTTP, alerts: 6, bans: 4},
			{ago: 30, scenario: scenScan, alerts: 4},
			{ago: 180, scenario: scenSSH, alerts: 3, bans: 0},
		},
		latencies: map[time.Duration]int{400 * time.Microsecond: 30, 1200 * time.Microsecond: 15, 3 * time.Millisecond: 4, 40 * time.Millisecond: 1},
	}
	geo := fixedGeo{}
	for i := range 120 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i / 100), byte(1 + i%100)})
		scen := scenSSH
		if i%4 == 3 {
			scen = scenHTTP
		}
		fx.status.decisions = append(fx.status.decisions, model.Decision{ID: int64(i + 1), Value: netip.PrefixFrom(a, 32),
			Type: "ban", Origin: model.OriginLocal, Scenario: scen, Reason: "overflow",
			Until: dashNow.Add(time.Duration(i+1) * time.Minute)})
		switch i % 3 {
		case 0:
			geo[a] = GeoInfo{Country: "NL", ASN: 64500, ASOrg: "Example Hosting"}
		case 1:
			geo[a] = GeoInfo{Country: "BR", ASN: 64501}
		}
	}
	for i := range 30 {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i%7)})
		scen := []string{scenSSH, scenHTTP, scenScan}[i%3]
		stop := dashNow.Add(-time.Duration(i) * time.Minute)
		fx.status.alerts = append(fx.status.alerts, model.Alert{Scenario: scen, Scope: model.ScopeIP, Value: a.String(),
			Source: netip.PrefixFrom(a, 32), Start: stop.Add(-time.Minute), Stop: stop, EventsCount: 5 + i%4})
	}
	fx.geo = geo
	return fx
}

// page builds a status page over the fixture, on the fixed clock, as the
// server would after its samplers ran.
func (fx dashFixture) page(t testing.TB) *statusPage {
	t.Helper()
	w := newWorld()
	s, err := New(Config{
		Sources: w, Engine: w, Reconciler: fakeReconciler{w}, NFTables: fakeNFT{w}, XDP: fakeXDP{w},
		Decisions: fx.status, Status: fx.status, Geo: fx.geo, ElementsInterval: time.Nanosecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Registry().Register(NewNotifyCollector(fx.notify)); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().Register(NewActionCollector(fx.actions)); err != nil {
		t.Fatal(err)
	}
	for d, n := range fx.latencies {
		for range n {
			s.Latency().Observe(d)
		}
	}
	for _, p := range fx.trend {
		s.trend.add(dashNow.Add(-time.Duration(p.ago)*time.Minute), p.scenario, p.alerts, p.bans)
	}
	tmpl, err := parseStatusTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return &statusPage{s: s, tmpl: tmpl, now: func() time.Time { return dashNow }, loc: time.UTC}
}

func render(t testing.TB, h http.Handler, query string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+query, nil))
	return rec.Code, rec.Body.String()
}

// TestDashboardGolden renders the page of the fixture and compares it with
// testdata (regenerate with -update, then read the diff).
func TestDashboardGolden(t *testing.T) {
	p := newDashFixture().page(t)
	for _, tc := range []struct{ query, golden string }{
		{"?range=1h", "dashboard-1h.html"},
		{"?range=24h&page=3", "dashboard-24h-page3.html"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			code, body := render(t, p, tc.query)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			golden(t, tc.golden, []byte(body))
		})
	}
}

// TestDashboardContent checks what the golden files are meant to show,
// so an -update that breaks it does not pass unread.
func TestDashboardContent(t *testing.T) {
	p := newDashFixture().page(t)
	tests := []struct {
		name  string
		query string
		want  []string
		deny  []string
		// order lists markers that must appear in this order: the
		// summaries first, the long table last.
		order []string
	}{
		{name: "last hour", query: "?range=1h",
			want: []string{
				`id="bans-total">24<`, `id="alerts-total">31<`, `id="active-total">120<`,
				`<title>crowdsecurity/ssh-bf: 9 at 11:58</title>`,
				`<title>crowdsecurity/http-probing: 4 at 11:40</title>`,
				`<td class="w">mail</td><td>email</td><td class="failing">failing</td>`,
				`<td class="w">audit</td><td>file</td><td class="degraded">degraded</td>`,
				`<td class="w">ops-webhook</td><td>webhook</td><td class="ok">ok</td>`,
				`<td class="w">abuse-report</td><td class="degraded">degraded</td><td class="n">7</td><td class="n">1</td><td class="n">0</td><td class="n">0</td><td class="n">500.00ms</td>`,
				`<td class="w">switch-acl</td><td class="failing">failing</td><td class="n">0</td><td class="n">2</td><td class="n">0</td><td class="n">3</td><td class="n">20.00s</td>`,
				`<span>NL`, `<span>AS64500 Example Hosting`,
				`<a href="?page=2">next →</a>`, `<span>page 1</span>`,
				`<meta name="viewport" content="width=device-width, initial-scale=1">`,
			},
			deny:  []string{`<title>crowdsecurity/ssh-bf: 3 at 09:00`, `previous`},
			order: []string{`id="summary"`, `id="chart-bans"`, `id="chart-alerts"`, `Top scenarios`, `Top sources`, `Countries`, `id="chart-latency"`, `id="notify"`, `id="actions"`, `id="alerts"`, `id="decisions"`}},
		{name: "last day counts three hours ago", query: "?range=24h",
			want: []string{`id="alerts-total">34<`, `<title>crowdsecurity/ssh-bf: 3 at 09:00</title>`}},
		{name: "last page of the table", query: "?page=3",
			want: []string{`<a href="?page=2">← previous</a>`, `<td>198.18.1.20/32</td>`, `<span>page 3</span>`},
			deny: []string{`next →`, `<td>198.18.0.100/32</td>`}},
		{name: "search keeps to its page", query: "?ip=198.18.0.7",
			want: []string{`<td>198.18.0.7/32</td>`}, deny: []string{`<td>198.18.0.8/32</td>`, `next →`}},
		{name: "page past the end", query: "?page=9",
			want: []string{`no decisions on this page`, `<a href="?page=8">← previous</a>`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := render(t, p, tc.query)
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %s", s)
				}
			}
			for _, s := range tc.deny {
				if strings.Contains(body, s) {
					t.Errorf("page has %s", s)
				}
			}
			last := -1
			for _, s := range tc.order {
				i := strings.Index(body, s)
				if i < 0 || i < last {
					t.Errorf("%s is at %d, want after %d", s, i, last)
				}
				last = i
			}
		})
	}
}

// TestDashboardNoGeo checks the country and AS panels say GeoIP is off
// rather than showing empty lists.
func TestDashboardNoGeo(t *testing.T) {
	fx := newDashFixture()
	fx.geo = nil
	_, body := render(t, fx.page(t), "")
	if !strings.Contains(body, `id="geo-off"`) {
		t.Error("page does not say GeoIP is off")
	}
}

// hostile are strings an attacker can put in a scenario name (a fleet
// agent's push), a reason, an alert's value or a channel name.
var hostile = []string{
	`<script>alert(1)</script>`,
	`"><img src=x onerror=alert(2)>`,
	`</title></svg><svg onload=alert(3)>`,
	`javascript:alert(4)`,
	`x" style="position:fixed;inset:0`,
}

// TestDashboardHostileNames puts markup into every attacker-influenced
// field and checks the parsed page holds only the elements and attributes
// the template writes, and shows each string as text.
func TestDashboardHostileNames(t *testing.T) {
	fx := newDashFixture()
	for i, h := range hostile {
		ago := 1 + i
		fx.trend = append(fx.trend, trendPoint{ago: ago, scenario: h, alerts: 1, bans: 1})
		fx.status.counts.Alerts = append(fx.status.counts.Alerts, CreatedStat{Scenario: h, Origin: "local", Count: 50})
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		fx.status.decisions = append([]model.Decision{{Value: netip.PrefixFrom(a, 32), Type: h, Origin: model.Origin(h),
			Scenario: h, Reason: h, Until: dashNow.Add(time.Hour)}}, fx.status.decisions...)
		fx.status.alerts = append([]model.Alert{{Scenario: h, Value: h, Source: netip.PrefixFrom(a, 32), Stop: dashNow}}, fx.status.alerts...)
		fx.notify = append(fx.notify, NotifyStat{Name: h, Kind: h, Failed: 1})
		fx.actions = append(fx.actions, ActionStat{Name: h, Runs: map[string]uint64{"ok": 1}})
		fx.geo.(fixedGeo)[a] = GeoInfo{Country: h, ASN: 64510, ASOrg: h}
	}
	p := fx.page(t)
	for _, q := range []string{"?range=1h", "?range=24h", "?ip=" + url.QueryEscape(hostile[0])} {
		_, body := render(t, p, q)
		doc, err := html.Parse(strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s: parse: %v", q, err)
		}
		var text strings.Builder
		checkNodes(t, q, doc, &text)
		if q == "?range=1h" {
			for _, h := range hostile {
				if n := strings.Count(text.String(), h); n < 5 {
					t.Errorf("%s: %q shown as text %d times, want it in every panel (5 or more)", q, h, n)
				}
			}
		}
	}
}

// allowed is every element the template writes with the attributes it
// may carry.
var allowed = map[string]string{
	"html": "lang", "head": "", "meta": "charset name content", "title": "", "style": "", "body": "",
	"header": "", "h1": "", "h2": "", "span": "class style", "a": "href class", "main": "", "section": "class id",
	"div": "class", "small": "", "b": "id class", "form": "method action", "input": "type name placeholder value",
	"button": "type", "p": "class id", "table": "id", "tbody": "", "tr": "", "th": "class", "td": "class",
	"svg": "class id viewBox role aria-label", "line": "x1 x2 y1 y2", "rect": "x y width height fill", "text": "x y text-anchor",
	"ul": "class", "ol": "class", "li": "", "i": "style",
}

func checkNodes(t *testing.T, q string, n *html.Node, text *strings.Builder) {
	t.Helper()
	switch n.Type {
	case html.ElementNode:
		attrs, ok := allowed[n.Data]
		if !ok {
			t.Errorf("%s: unexpected element <%s>", q, n.Data)
		}
		for _, a := range n.Attr {
			if !strings.Contains(" "+attrs+" ", " "+a.Key+" ") {
				t.Errorf("%s: unexpected attribute %s=%q on <%s>", q, a.Key, a.Val, n.Data)
			}
			if a.Key == "href" && !strings.HasPrefix(a.Val, "?") && !strings.HasPrefix(a.Val, "/") {
				t.Errorf("%s: link %q leaves the page", q, a.Val)
			}
			if a.Key == "style" && !strings.HasPrefix(a.Val, "width:") && !strings.HasPrefix(a.Val, "background:#") {
				t.Errorf("%s: style %q is not one the template writes", q, a.Val)
			}
		}
	case html.TextNode:
		text.WriteString(n.Data)
		text.WriteByte('\n')
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		checkNodes(t, q, c, text)
	}
}

func TestNotifyHealth(t *testing.T) {
	tests := []struct {
		stat NotifyStat
		want string
	}{
		{NotifyStat{Name: "a", Sent: 3}, "ok"},
		{NotifyStat{Name: "a"}, "ok"},
		{NotifyStat{Name: "a", Failed: 1}, "failing"},
		{NotifyStat{Name: "a", Sent: 5, Failed: 1}, "degraded"},
		{NotifyStat{Name: "a", Sent: 5, Dropped: 1}, "degraded"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.stat), func(t *testing.T) {
			p := dashFixture{status: &fixedStatus{}, notify: fixedNotify{tc.stat}}.page(t)
			fams, err := p.s.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			rows := notifyRows(Families(fams))
			if len(rows) != 1 || rows[0].Health != tc.want {
				t.Errorf("rows %+v, want one %s", rows, tc.want)
			}
		})
	}
}

// BenchmarkDashboard renders the page over a full ring: every minute of
// the day holds trendMaxScenarios scenarios.
func BenchmarkDashboard(b *testing.B) {
	p := newDashFixture().page(b)
	for m := range trendMinutes {
		for s := range trendMaxScenarios {
			p.s.trend.add(dashNow.Add(-time.Duration(m)*time.Minute), fmt.Sprintf("scenario-%02d", s), 3, 1)
		}
	}
	for _, q := range []string{"?range=24h", "?range=1h"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				if code, _ := render(b, p, q); code != http.StatusOK {
					b.Fatalf("status %d", code)
				}
			}
		})
	}
}

func TestActionHealth(t *testing.T) {
	tests := []struct {
		name string
		stat ActionStat
		want string
	}{
		{"never ran", ActionStat{Name: "a"}, "ok"},
		{"all ok", ActionStat{Name: "a", Runs: map[string]uint64{"ok": 3}}, "ok"},
		{"stopped is no failure", ActionStat{Name: "a", Runs: map[string]uint64{"ok": 3, "stopped": 2}}, "ok"},
		{"every run failed", ActionStat{Name: "a", Runs: map[string]uint64{"start": 1, "template": 1}}, "failing"},
		{"some failed", ActionStat{Name: "a", Runs: map[string]uint64{"ok": 3, "timeout": 1}}, "degraded"},
		{"dropped events", ActionStat{Name: "a", Runs: map[string]uint64{"ok": 3}, Dropped: 1}, "degraded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := dashFixture{status: &fixedStatus{}, actions: fixedActions{tc.stat}}.page(t)
			fams, err := p.s.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			rows := actionRows(Families(fams))
			if len(rows) != 1 || rows[0].Health != tc.want {
				t.Errorf("rows %+v, want one %s", rows, tc.want)
			}
		})
	}
}
