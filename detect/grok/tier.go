package grok

// Tier is one way of matching a pattern. A pattern tries its tiers in the
// order of the constants; the first that answers decides.
type Tier uint8

const (
	// Fast is a hand-written matcher for one hub pattern (syslog lines,
	// nginx access lines, http-logs' path splitting), installed only when
	// the pattern expands exactly as the matcher assumes. It gives up on
	// input of unusual shape.
	Fast Tier = iota
	// Backtrack is the ASCII backtracker: it gives up on non-ASCII input
	// and on input too long for its memory of failed states.
	Backtrack
	// Regexp is Go's regexp; it always answers.
	Regexp
	// NumTiers is the number of tiers.
	NumTiers
)

func (t Tier) String() string {
	switch t {
	case Fast:
		return "fast"
	case Backtrack:
		return "backtrack"
	case Regexp:
		return "regexp"
	}
	return "unknown"
}

// TierCounts counts patterns per tier.
type TierCounts [NumTiers]int

// Add adds o's counts to c.
func (c *TierCounts) Add(o TierCounts) {
	for t, n := range o {
		c[t] += n
	}
}
