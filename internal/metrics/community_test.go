package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// scrapeText registers c alone and returns its exposition text.
func scrapeText(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

type communityClientSrc CommunityClientStats

func (s communityClientSrc) CommunityClientStats() CommunityClientStats {
	return CommunityClientStats(s)
}

type communityServerSrc struct {
	st  CommunityServerStats
	err error
}

func (s communityServerSrc) CommunityServerStats() (CommunityServerStats, error) { return s.st, s.err }

func TestCommunityClientMetrics(t *testing.T) {
	c := NewCommunityClient(communityClientSrc{Sent: 12, Dropped: 3, Queued: 5, Pulls: 4, PullErrors: 1, Held: 250})
	want := `
# HELP moat_community_decisions Decisions of origin community held after the last pull.
# TYPE moat_community_decisions gauge
moat_community_decisions 250
# HELP moat_community_pull_errors_total Pulls of the community blocklist that failed (retried with backoff).
# TYPE moat_community_pull_errors_total counter
moat_community_pull_errors_total 1
# HELP moat_community_pulls_total Pulls of the community blocklist tried.
# TYPE moat_community_pulls_total counter
moat_community_pulls_total 4
# HELP moat_community_queue Signals waiting to be sent.
# TYPE moat_community_queue gauge
moat_community_queue 5
# HELP moat_community_signals_dropped_total Signals dropped unsent, the queue being full.
# TYPE moat_community_signals_dropped_total counter
moat_community_signals_dropped_total 3
# HELP moat_community_signals_sent_total Signals of local bans the community server took.
# TYPE moat_community_signals_sent_total counter
moat_community_signals_sent_total 12
`
	if got := scrapeText(t, c); got != strings.TrimPrefix(want, "\n") {
		t.Errorf("scrape:\n%s\nwant:\n%s", got, want)
	}
}

func TestCommunityServerMetrics(t *testing.T) {
	c := NewCommunityServer(communityServerSrc{st: CommunityServerStats{Accepted: 900, Malformed: 2, Canary: 7, RateLimited: 40, TooLarge: 1001, Pulls: 33, Reporters: 6, Listed: 120}})
	want := `
# HELP moat_community_server_listed_addresses Addresses on the published list.
# TYPE moat_community_server_listed_addresses gauge
moat_community_server_listed_addresses 120
# HELP moat_community_server_pulls_total Blocklist pulls served.
# TYPE moat_community_server_pulls_total counter
moat_community_server_pulls_total 33
# HELP moat_community_server_reporters Enrolled reporters.
# TYPE moat_community_server_reporters gauge
moat_community_server_reporters 6
# HELP moat_community_server_signals_accepted_total Signals stored as reports.
# TYPE moat_community_server_signals_accepted_total counter
moat_community_server_signals_accepted_total 900
# HELP moat_community_server_signals_refused_total Signals not stored, by reason.
# TYPE moat_community_server_signals_refused_total counter
moat_community_server_signals_refused_total{reason="canary"} 7
moat_community_server_signals_refused_total{reason="malformed"} 2
moat_community_server_signals_refused_total{reason="rate_limited"} 40
moat_community_server_signals_refused_total{reason="too_large"} 1001
`
	if got := scrapeText(t, c); got != strings.TrimPrefix(want, "\n") {
		t.Errorf("scrape:\n%s\nwant:\n%s", got, want)
	}
	// A database that cannot be read fails the scrape rather than
	// reporting zeros.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCommunityServer(communityServerSrc{err: errors.New("database is locked")}))
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("gather with a failing source: %v, want the source's error", err)
	}
}
