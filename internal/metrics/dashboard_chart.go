package metrics

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Charts are laid out here and drawn as inline SVG by the template: the
// page works without scripts and with no asset from anywhere else, and the
// template escapes every name that reaches a <title> or a <text>.

// Chart geometry, in viewBox units.
const (
	chartW      = 600.0
	chartH      = 180.0
	chartLeft   = 36.0  // room for the y labels
	chartTop    = 10.0  // room for the top label
	chartBottom = 160.0 // x axis; x labels below it
	// chartSeries is how many series get their own color; the rest share
	// chartOtherColor.
	chartSeries = 5
)

// chartColors are far apart in hue so a screenshot test, and a reader,
// can tell them apart.
var chartColors = [chartSeries]string{"#2f6fde", "#e4572e", "#17a398", "#f2a900", "#8e44ad"}

const chartOtherColor = "#9aa3b0"

type chartRect struct {
	X, Y, W, H float64
	Color      string
	Title      string
}

type chartText struct {
	X, Y   float64
	Anchor string
	Text   string
}

type legendItem struct {
	Name  string
	Color string
	Total uint64
}

// chart is one SVG chart ready for the template.
type chart struct {
	ID     string
	Label  string
	W, H   float64
	Rects  []chartRect
	Texts  []chartText
	Grid   []float64 // y of horizontal grid lines
	Legend []legendItem
	Total  uint64
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so the top grid
// line carries a round number.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// yAxis adds the grid lines and labels of a 0..top axis to c.
func (c *chart) yAxis(top float64) {
	for _, f := range []float64{0, 0.5, 1} {
		y := round2(chartBottom - f*(chartBottom-chartTop))
		c.Grid = append(c.Grid, y)
		c.Texts = append(c.Texts, chartText{X: chartLeft - 4, Y: y + 4, Anchor: "end", Text: FormatCount(f * top)})
	}
}

// stackedChart draws steps as bars stacked by key: the chartSeries keys
// with the largest totals in their own colors, the others as one.
func stackedChart(id, label string, steps []map[string]uint64, start time.Time, step time.Duration, loc *time.Location) chart {
	c := chart{ID: id, Label: label, W: chartW, H: chartH}
	keys, tot := topKeys(steps)
	color := map[string]string{}
	for i, k := range keys {
		if i < chartSeries {
			color[k] = chartColors[i]
			c.Legend = append(c.Legend, legendItem{Name: k, Color: chartColors[i], Total: tot[k]})
			continue
		}
		color[k] = chartOtherColor
		if len(c.Legend) == chartSeries {
			c.Legend = append(c.Legend, legendItem{Name: trendOther, Color: chartOtherColor})
		}
		c.Legend[chartSeries].Total += tot[k]
	}
	var peak uint64
	for _, m := range steps {
		var s uint64
		for _, v := range m {
			s += v
		}
		c.Total += s
		peak = max(peak, s)
	}
	top := niceCeil(float64(peak))
	c.yAxis(top)
	n := len(steps)
	if n == 0 {
		return c
	}
	slot := (chartW - chartLeft) / float64(n)
	bw := slot * 0.8
	scale := (chartBottom - chartTop) / top
	for i, m := range steps {
		x := round2(chartLeft + float64(i)*slot + (slot-bw)/2)
		at := start.Add(time.Duration(i) * step).In(loc).Format("15:04")
		y := chartBottom
		// Stack in legend order, so colors keep their place in every bar;
		// the "other" keys come last, drawn as one.
		var other uint64
		for _, k := range keys {
			v := m[k]
			if v == 0 {
				continue
			}
			if color[k] == chartOtherColor {
				other += v
				continue
			}
			h := float64(v) * scale
			y -= h
			c.Rects = append(c.Rects, chartRect{X: x, Y: round2(y), W: round2(bw), H: round2(h), Color: color[k],
				Title: fmt.Sprintf("%s: %d at %s", k, v, at)})
		}
		if other > 0 {
			h := float64(other) * scale
			y -= h
			c.Rects = append(c.Rects, chartRect{X: x, Y: round2(y), W: round2(bw), H: round2(h), Color: chartOtherColor,
				Title: fmt.Sprintf("%s: %d at %s", trendOther, other, at)})
		}
	}
	// The first and last labels hang inward, so the edges do not clip them.
	for i, anchor := range map[int]string{0: "start", n / 2: "middle", n - 1: "end"} {
		x := chartLeft + (float64(i)+0.5)*slot
		switch anchor {
		case "start":
			x = chartLeft
		case "end":
			x = chartW
		}
		c.Texts = append(c.Texts, chartText{X: round2(x), Y: chartH - 2, Anchor: anchor,
			Text: start.Add(time.Duration(i) * step).In(loc).Format("15:04")})
	}
	sort.Slice(c.Texts, func(i, j int) bool { return c.Texts[i].X < c.Texts[j].X })
	return c
}

// histogramChart draws a histogram's buckets, not cumulative, one bar per
// bucket labelled with its upper bound.
func histogramChart(id, label string, bs []Bucket) chart {
	c := chart{ID: id, Label: label, W: chartW, H: chartH}
	counts := make([]float64, len(bs))
	var prev, peak float64
	for i, b := range bs {
		counts[i] = b.Count - prev
		prev = b.Count
		peak = max(peak, counts[i])
		c.Total += uint64(counts[i])
	}
	top := niceCeil(peak)
	c.yAxis(top)
	if len(bs) == 0 {
		return c
	}
	slot := (chartW - chartLeft) / float64(len(bs))
	bw := slot * 0.8
	scale := (chartBottom - chartTop) / top
	for i, b := range bs {
		le := "+Inf"
		if !math.IsInf(b.UpperBound, 1) {
			le = FormatSeconds(b.UpperBound)
		}
		x := chartLeft + float64(i)*slot + (slot-bw)/2
		if counts[i] > 0 {
			h := counts[i] * scale
			c.Rects = append(c.Rects, chartRect{X: round2(x), Y: round2(chartBottom - h), W: round2(bw), H: round2(h),
				Color: chartColors[0], Title: fmt.Sprintf("≤ %s: %s", le, FormatCount(counts[i]))})
		}
		if i%4 == 0 || i == len(bs)-1 {
			anchor := "middle"
			switch i {
			case 0:
				anchor = "start"
			case len(bs) - 1:
				anchor = "end"
			}
			c.Texts = append(c.Texts, chartText{X: round2(x + bw/2), Y: chartH - 2, Anchor: anchor, Text: le})
		}
	}
	return c
}
