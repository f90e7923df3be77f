package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FeedStats are one list feed's counters (enforce/feed's, copied).
type FeedStats struct {
	Name                string
	Pulls, Failures     int64
	Held                int
	LastSuccess         time.Time
	Allowlisted, Capped int
}

// FeedSource reads the feeds' counters at scrape time.
type FeedSource interface {
	FeedStats() []FeedStats
}

// Feeds exports the list feeds' metrics, one series per feed. Register it
// only when feeds are configured, so a host without them shows none.
type Feeds struct {
	src                                               FeedSource
	pulls, failures, held, lastSuccess, allowed, caps *prometheus.Desc
}

// NewFeeds returns the collector over src.
func NewFeeds(src FeedSource) *Feeds {
	return &Feeds{
		src:         src,
		pulls:       desc("moat_feed_pulls_total", "Pulls of a list feed tried.", "feed"),
		failures:    desc("moat_feed_pull_errors_total", "Pulls of a list feed that failed; the feed's decisions were kept as they were.", "feed"),
		held:        desc("moat_feed_decisions", "Decisions a list feed holds after its last successful pull.", "feed"),
		lastSuccess: desc("moat_feed_last_success_timestamp_seconds", "When a list feed was last pulled successfully (0: never).", "feed"),
		allowed:     desc("moat_feed_allowlisted_entries", "Entries of a feed's last pull left out as allowlisted.", "feed"),
		caps:        desc("moat_feed_capped_entries", "Entries of a feed's last pull left out past its max_entries.", "feed"),
	}
}

func (c *Feeds) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pulls, c.failures, c.held, c.lastSuccess, c.allowed, c.caps} {
		ch <- d
	}
}

func (c *Feeds) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.src.FeedStats() {
		counter(ch, c.pulls, uint64(max(f.Pulls, 0)), f.Name)
		counter(ch, c.failures, uint64(max(f.Failures, 0)), f.Name)
		gauge(ch, c.held, float64(f.Held), f.Name)
		last := 0.0
		if !f.LastSuccess.IsZero() {
			last = float64(f.LastSuccess.UnixNano()) / 1e9
		}
		gauge(ch, c.lastSuccess, last, f.Name)
		gauge(ch, c.allowed, float64(f.Allowlisted), f.Name)
		gauge(ch, c.caps, float64(f.Capped), f.Name)
	}
}
