package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/moatsec/moat/internal/metrics"
)

// scrapeURL turns metrics.listen into the URL a local client scrapes: a
// wildcard or empty host means the daemon listens on every address, so the
// loopback one is used.
func scrapeURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("metrics.listen is empty: the daemon serves no metrics")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("metrics.listen %q: %w", listen, err)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics", nil
}

// fetchMetrics scrapes url and returns the raw exposition and its parsed
// families. Basic auth credentials may ride in the URL.
func fetchMetrics(ctx context.Context, c *http.Client, url string) ([]byte, map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	// Ask for text: the parser reads the text format only.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape metrics (is the daemon running?): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("scrape %s: %s", req.URL.Redacted(), resp.Status)
	}
	fams, err := parseMetricsText(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", req.URL.Redacted(), err)
	}
	return body, fams, nil
}

// parseMetricsText reads the Prometheus text exposition format.
func parseMetricsText(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// metricsTable is one table `moat metrics` prints: its title, its column
// headers and its rows' cells, a float64 cell being a count.
type metricsTable struct {
	title  string
	header []string
	rows   func(s metrics.Summary) [][]any
}

// metricsTables are the tables `moat metrics` prints, in order.
var metricsTables = []metricsTable{
	{"Sources:", []string{"SOURCE", "KIND", "LINES", "BYTES", "ERRORS", "CUT", "LAG", "STATUS"}, func(s metrics.Summary) [][]any {
		return eachRow(s.Sources, func(r metrics.SourceRow) []any {
			status := "up"
			if !r.Up {
				status = "DOWN"
			}
			return []any{r.Name, r.Kind, r.Lines, r.Bytes, r.Errors, r.CutLines, metrics.FormatSeconds(r.LagSeconds), status}
		})
	}},
	{"Engine:", []string{"LINES", "PARSED", "UNPARSED", "WHITELISTED", "COVERAGE"}, func(s metrics.Summary) [][]any {
		e := s.Engine
		return [][]any{{e.Lines, e.Parsed, e.Unparsed, e.Whitelisted, metrics.FormatPercent(e.Parsed, e.Parsed+e.Unparsed)}}
	}},
	{"Parsers:", []string{"STAGE", "PARSER", "HITS", "PARSED", "UNPARSED"}, func(s metrics.Summary) [][]any {
		return eachRow(s.Parsers, func(r metrics.ParserRow) []any { return []any{r.Stage, r.Parser, r.Hits, r.Parsed, r.Unparsed} })
	}},
	{"Scenarios:", []string{"SCENARIO", "POURS", "OVERFLOWS", "BUCKETS", "EVICTIONS", "ALERTS", "DECISIONS"}, func(s metrics.Summary) [][]any {
		return eachRow(s.Scenarios, func(r metrics.ScenarioRow) []any {
			return []any{r.Name, r.Pours, r.Overflows, r.Buckets, r.Evictions, r.Alerts, r.Decisions}
		})
	}},
	{"Decisions:", []string{"ORIGIN", "ACTIVE", "CREATED"}, func(s metrics.Summary) [][]any {
		return eachRow(s.Decisions, func(r metrics.DecisionRow) []any { return []any{r.Origin, r.Active, r.Created} })
	}},
	{"Kernel:", []string{"BACKEND", "SET", "ELEMENTS", "DROPPED PACKETS", "DROPPED BYTES"}, func(s metrics.Summary) [][]any {
		return eachRow(s.Kernel, func(r metrics.KernelRow) []any { return []any{r.Backend, r.Set, r.Elements, r.Packets, r.Bytes} })
	}},
	{"Reconciler:", []string{"BATCHES", "APPLY ERRORS", "REFUSED", "DRIFT", "ENTRIES", "LAST APPLY"}, func(s metrics.Summary) [][]any {
		rc := s.Reconciler
		return [][]any{{rc.Batches, rc.ApplyErrors, rc.Refused, rc.Drift, rc.Entries, metrics.FormatSeconds(rc.LastApplySeconds)}}
	}},
	{"Detection to kernel:", []string{"BANS", "MEAN", "P50", "P90", "P99"}, func(s metrics.Summary) [][]any {
		l := s.Latency
		mean := math.NaN()
		if l.Count > 0 {
			mean = l.SumSeconds / l.Count
		}
		return [][]any{{l.Count, metrics.FormatSeconds(mean), metrics.FormatSeconds(l.P50), metrics.FormatSeconds(l.P90), metrics.FormatSeconds(l.P99)}}
	}},
}

func eachRow[R any](rs []R, cells func(R) []any) [][]any {
	out := make([][]any, len(rs))
	for i, r := range rs {
		out[i] = cells(r)
	}
	return out
}

// writeMetricsText prints the summary as the tables of `moat metrics`.
func writeMetricsText(w io.Writer, s metrics.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range metricsTables {
		fmt.Fprintf(tw, "\n%s\n", t.title)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, cells := range t.rows(s) {
			parts := make([]string, len(cells))
			for i, c := range cells {
				if v, ok := c.(float64); ok {
					parts[i] = metrics.FormatCount(v)
				} else {
					parts[i] = fmt.Sprint(c)
				}
			}
			fmt.Fprintln(tw, strings.Join(parts, "\t"))
		}
	}
	return tw.Flush()
}
