package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The charts are plain SVG written here: no plotting tool, so make bench
// regenerates them anywhere.

const (
	chartW, chartH             = 820, 420
	padL, padR, padT, padB     = 70, 250, 40, 55
	plotW, plotH               = chartW - padL - padR, chartH - padT - padB
	chartFont                  = `font-family="DejaVu Sans, Helvetica, Arial, sans-serif"`
	colNFT, colXDP, colC, colD = "#1f77b4", "#d62728", "#2ca02c", "#9467bd"
)

// logAxis maps values in [lo, hi] (decades) onto [0, length].
type logAxis struct{ lo, hi float64 }

func newLogAxis(vmin, vmax float64) logAxis {
	vmin, vmax = max(vmin, 1e-9), max(vmax, vmin*10)
	return logAxis{math.Floor(math.Log10(vmin)), math.Ceil(math.Log10(vmax))}
}

func (a logAxis) pos(v, length float64) float64 {
	return (math.Log10(max(v, math.Pow(10, a.lo))) - a.lo) / (a.hi - a.lo) * length
}

// ticks are 1, 2 and 5 times each power of ten in range.
func (a logAxis) ticks() []float64 {
	var ts []float64
	for e := a.lo; e <= a.hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); math.Log10(v) <= a.hi+1e-9 {
				ts = append(ts, v)
			}
		}
	}
	return ts
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", v)
	}
}

// short is v with three significant digits and a k or M suffix.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

type svgDoc struct{ b strings.Builder }

func newSVG(title string) *svgDoc {
	s := &svgDoc{}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s font-size="12">`+"\n", chartW, chartH, chartW, chartH, chartFont)
	fmt.Fprintf(&s.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&s.b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	return s
}

func (s *svgDoc) add(format string, args ...any) { fmt.Fprintf(&s.b, format+"\n", args...) }

func (s *svgDoc) text(x, y float64, anchor, text string) {
	s.add(`<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, x, y, anchor, html.EscapeString(text))
}

func (s *svgDoc) legend(i int, color, label string) {
	x, y := float64(chartW-padR+15), float64(padT+10+i*20)
	s.add(`<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>`, x, y-9, color)
	s.text(x+20, y, "start", label)
}

func (s *svgDoc) write(path string) error {
	s.add("</svg>")
	return os.WriteFile(path, []byte(s.b.String()), 0o644)
}

// latencyCDF draws the cumulative distribution of each backend's samples
// for one source, on a log latency axis, with the p99 target.
func latencyCDF(path, source string, ls []Latency) error {
	var all []float64
	for _, l := range ls {
		all = append(all, l.Samples...)
	}
	if len(all) == 0 {
		return nil
	}
	target := latencyTargets[source]
	x := newLogAxis(slices.Min(all), max(slices.Max(all), target))
	s := newSVG(fmt.Sprintf("Log line (%s) written → attacker dropped: CDF", source))
	ox, oy := float64(padL), float64(padT+plotH)
	for _, t := range x.ticks() {
		px := ox + x.pos(t, plotW)
		s.add(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, px, padT, px, oy)
		s.text(px, oy+16, "middle", tickLabel(t))
	}
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 0.9, 1} {
		py := oy - f*plotH
		s.add(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, ox, py, ox+plotW, py)
		s.text(ox-6, py+4, "end", fmt.Sprint(f))
	}
	s.add(`<rect x="%.1f" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`, ox, padT, plotW, plotH)
	s.text(ox+plotW/2, float64(chartH-15), "middle", "latency (ms, log scale)")
	s.add(`<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">fraction of attacks dropped</text>`, oy-plotH/2)
	tx := ox + x.pos(target, plotW)
	s.add(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="5,4"/>`, tx, padT, tx, oy)
	s.text(tx+4, float64(padT+14), "start", fmt.Sprintf("p99 target %g ms", target))
	colors := map[string]string{"nftables": colNFT, "xdp": colXDP}
	for i, l := range ls {
		if colors[l.Backend] == "" {
			colors[l.Backend] = colC // a live peer (see writeCharts)
		}
		v := slices.Clone(l.Samples)
		slices.Sort(v)
		var pts strings.Builder
		for k, ms := range v {
			px := ox + x.pos(ms, plotW)
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", px, oy-float64(k)/float64(len(v))*plotH, px, oy-float64(k+1)/float64(len(v))*plotH)
		}
		s.add(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, colors[l.Backend], pts.String())
		s.legend(i, colors[l.Backend], fmt.Sprintf("%s (p99 %s ms)", l.Backend, fnum(l.Pooled.P99)))
		s.legend(i+len(ls)+1, "white", fmt.Sprintf("%s: %d attacks", l.Backend, len(l.Samples)))
	}
	return s.write(path)
}

// bar is one bar of a throughput chart.
type bar struct {
	label, color string
	v            Stat
}

// throughputBars draws lines/s per log and tool on a log axis, with the
// spread of the repetitions as whiskers.
func throughputBars(path string, ts []Throughput) error {
	groups := map[string][]bar{}
	sizes := map[string]map[string]int{} // log -> corpus -> lines
	var logs []string
	var lo, hi = math.Inf(1), 0.0
	for _, t := range ts {
		if t.LinesPerSec.N == 0 {
			continue
		}
		label, color := fmt.Sprintf("moat, %d workers", t.Workers), colNFT
		switch {
		case t.Tool != "moat":
			label, color = t.Tool+" (peer corpus)", colC
		case t.Corpus == "peer":
			label, color = fmt.Sprintf("moat, %d workers (peer corpus)", t.Workers), colD
		case t.Corpus == "large" && t.Workers == 1:
			label, color = "moat, 1 worker, "+short(float64(t.Lines))+"-line log", "#ff9896"
		case t.Corpus == "large":
			label, color = fmt.Sprintf("moat, %d workers, %s-line log", t.Workers, short(float64(t.Lines))), "#aec7e8"
		case t.Workers == 1:
			label, color = "moat, 1 worker", colXDP
		}
		if !slices.Contains(logs, t.Log) {
			logs = append(logs, t.Log)
			sizes[t.Log] = map[string]int{}
		}
		sizes[t.Log][t.Corpus] = t.Lines
		groups[t.Log] = append(groups[t.Log], bar{label, color, t.LinesPerSec})
		lo, hi = min(lo, t.LinesPerSec.Min), max(hi, t.LinesPerSec.Max)
	}
	if len(logs) == 0 {
		return nil
	}
	y := newLogAxis(lo/2, hi)
	s := newSVG("Replay throughput (lines/s, start-up included)")
	ox, oy := float64(padL), float64(padT+plotH)
	for _, t := range y.ticks() {
		py := oy - y.pos(t, plotH)
		s.add(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, ox, py, ox+plotW, py)
		s.text(ox-6, py+4, "end", tickLabel(t))
	}
	s.add(`<rect x="%.1f" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`, ox, padT, plotW, plotH)
	s.add(`<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">lines/s (log scale)</text>`, oy-plotH/2)
	gw := float64(plotW) / float64(len(logs))
	var legend []string
	for g, log := range logs {
		bs := groups[log]
		bw := gw * 0.8 / float64(len(bs))
		for i, b := range bs {
			x := ox + float64(g)*gw + gw*0.1 + float64(i)*bw
			h := y.pos(b.v.Median, plotH)
			s.add(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s lines/s</title></rect>`, x+2, oy-h, bw-4, h, b.color, html.EscapeString(b.label), fstat(b.v))
			if b.v.N > 1 {
				cx := x + bw/2
				s.add(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`, cx, oy-y.pos(b.v.Min, plotH), cx, oy-y.pos(b.v.Max, plotH))
			}
			s.text(x+bw/2, oy-h-4, "middle", short(b.v.Median))
			if !slices.Contains(legend, b.label+"|"+b.color) {
				legend = append(legend, b.label+"|"+b.color)
			}
		}
		label := log + ": " + short(float64(sizes[log]["main"])) + " lines"
		if n := sizes[log]["peer"]; n > 0 {
			label += ", peer corpus " + short(float64(n))
		}
		s.text(ox+float64(g)*gw+gw/2, oy+18, "middle", label)
	}
	for i, l := range legend {
		label, color, _ := strings.Cut(l, "|")
		s.legend(i, color, label)
	}
	return s.write(path)
}

// writeCharts writes the latency CDFs and the throughput bars into dir.
func writeCharts(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, src := range []string{"file", "journald"} {
		var ls []Latency
		for _, l := range res.Latency {
			if l.Source == src {
				ls = append(ls, l)
			}
		}
		if src == "file" {
			// The live peers tail a file too; their point is the address
			// in the set, moat's the packets dropped, a later one.
			for _, p := range res.PeerLatency {
				l := Latency{Source: src, Backend: strings.Fields(p.Peer)[0] + " + bouncer, address in set", Samples: p.Samples}
				l.Pooled.P99 = p.P99
				ls = append(ls, l)
			}
		}
		if err := latencyCDF(filepath.Join(dir, "latency-cdf-"+src+".svg"), src, ls); err != nil {
			return err
		}
	}
	return throughputBars(filepath.Join(dir, "throughput.svg"), res.Throughput)
}
