package metrics

import (
	"strings"
	"testing"
	"time"
)

type feedSrc []FeedStats

func (s feedSrc) FeedStats() []FeedStats { return s }

func TestFeedMetrics(t *testing.T) {
	c := NewFeeds(feedSrc{
		{Name: "partner", Pulls: 5, Failures: 2, Held: 1200, LastSuccess: time.Unix(1700000000, 0), Allowlisted: 1, Capped: 3},
		{Name: "tor", Pulls: 1, Failures: 1},
	})
	want := `
# HELP moat_feed_allowlisted_entries Entries of a feed's last pull left out as allowlisted.
# TYPE moat_feed_allowlisted_entries gauge
moat_feed_allowlisted_entries{feed="partner"} 1
moat_feed_allowlisted_entries{feed="tor"} 0
# HELP moat_feed_capped_entries Entries of a feed's last pull left out past its max_entries.
# TYPE moat_feed_capped_entries gauge
moat_feed_capped_entries{feed="partner"} 3
moat_feed_capped_entries{feed="tor"} 0
# HELP moat_feed_decisions Decisions a list feed holds after its last successful pull.
# TYPE moat_feed_decisions gauge
moat_feed_decisions{feed="partner"} 1200
moat_feed_decisions{feed="tor"} 0
# HELP moat_feed_last_success_timestamp_seconds When a list feed was last pulled successfully (0: never).
# TYPE moat_feed_last_success_timestamp_seconds gauge
moat_feed_last_success_timestamp_seconds{feed="partner"} 1.7e+09
moat_feed_last_success_timestamp_seconds{feed="tor"} 0
# HELP moat_feed_pull_errors_total Pulls of a list feed that failed; the feed's decisions were kept as they were.
# TYPE moat_feed_pull_errors_total counter
moat_feed_pull_errors_total{feed="partner"} 2
moat_feed_pull_errors_total{feed="tor"} 1
# HELP moat_feed_pulls_total Pulls of a list feed tried.
# TYPE moat_feed_pulls_total counter
moat_feed_pulls_total{feed="partner"} 5
moat_feed_pulls_total{feed="tor"} 1
`
	if got := scrapeText(t, c); strings.TrimSpace(got) != strings.TrimSpace(want) {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}
