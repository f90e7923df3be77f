package bench

import (
	"math"
	"slices"
)

// Stat is one measurement repeated: the median, the spread (min and max)
// and every value, in the order taken.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	N      int       `json:"n"`
	Values []float64 `json:"values"`
}

// newStat summarises xs; an empty xs gives a zero Stat with N 0.
func newStat(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Stat{Median: quantile(s, 0.5), Min: s[0], Max: s[len(s)-1], N: len(s), Values: slices.Clone(xs)}
}

// quantile of sorted values, linearly interpolated between closest ranks.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// percentiles returns p50, p99 and the maximum of xs.
func percentiles(xs []float64) (p50, p99, maxv float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	return quantile(s, 0.5), quantile(s, 0.99), s[len(s)-1]
}
