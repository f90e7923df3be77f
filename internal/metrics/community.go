package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// CommunityClientStats are the daemon's community client counters
// (enforce/community/client's, copied).
type CommunityClientStats struct {
	Sent, Dropped     int64
	Queued            int64
	Pulls, PullErrors int64
	Held              int64
}

// CommunityClientSource reads the client's counters at scrape time.
type CommunityClientSource interface {
	CommunityClientStats() CommunityClientStats
}

// CommunityClient exports the community client's metrics. Register it
// on Server.Registry only when the client runs, so a host with the
// exchange off shows no community series at all.
type CommunityClient struct {
	src                                         CommunityClientSource
	sent, dropped, queue, pulls, pullErrs, held *prometheus.Desc
}

// NewCommunityClient returns the collector over src.
func NewCommunityClient(src CommunityClientSource) *CommunityClient {
	return &CommunityClient{
		src:      src,
		sent:     desc("moat_community_signals_sent_total", "Signals of local bans the community server took."),
		dropped:  desc("moat_community_signals_dropped_total", "Signals dropped unsent, the queue being full."),
		queue:    desc("moat_community_queue", "Signals waiting to be sent."),
		pulls:    desc("moat_community_pulls_total", "Pulls of the community blocklist tried."),
		pullErrs: desc("moat_community_pull_errors_total", "Pulls of the community blocklist that failed (retried with backoff)."),
		held:     desc("moat_community_decisions", "Decisions of origin community held after the last pull."),
	}
}

func (c *CommunityClient) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.dropped, c.queue, c.pulls, c.pullErrs, c.held} {
		ch <- d
	}
}

func (c *CommunityClient) Collect(ch chan<- prometheus.Metric) {
	st := c.src.CommunityClientStats()
	counter(ch, c.sent, uint64(max(st.Sent, 0)))
	counter(ch, c.dropped, uint64(max(st.Dropped, 0)))
	counter(ch, c.pulls, uint64(max(st.Pulls, 0)))
	counter(ch, c.pullErrs, uint64(max(st.PullErrors, 0)))
	gauge(ch, c.queue, float64(st.Queued))
	gauge(ch, c.held, float64(st.Held))
}

// CommunityServerStats are the community server's counters and what it
// holds (enforce/community/server's, copied).
type CommunityServerStats struct {
	Accepted int64
	// Refused signals by reason: malformed (not an Ip-scoped address),
	// canary (a canary or non-public address), rate_limited, too_large
	// (in a request over the batch limit).
	Malformed, Canary, RateLimited, TooLarge int64
	Pulls                                    int64
	// Reporters are the enrolled reporters, Listed the addresses on the
	// list; both counted at scrape time.
	Reporters, Listed int64
}

// CommunityServerSource reads the server's figures at scrape time. An
// error (the database being unreachable) is exported as an invalid
// metric, which fails the scrape visibly instead of showing stale zeros.
type CommunityServerSource interface {
	CommunityServerStats() (CommunityServerStats, error)
}

// CommunityServer exports `moat community serve`'s metrics.
type CommunityServer struct {
	src                                         CommunityServerSource
	accepted, refused, pulls, reporters, listed *prometheus.Desc
}

// NewCommunityServer returns the collector over src.
func NewCommunityServer(src CommunityServerSource) *CommunityServer {
	return &CommunityServer{
		src:       src,
		accepted:  desc("moat_community_server_signals_accepted_total", "Signals stored as reports."),
		refused:   desc("moat_community_server_signals_refused_total", "Signals not stored, by reason.", "reason"),
		pulls:     desc("moat_community_server_pulls_total", "Blocklist pulls served."),
		reporters: desc("moat_community_server_reporters", "Enrolled reporters."),
		listed:    desc("moat_community_server_listed_addresses", "Addresses on the published list."),
	}
}

func (c *CommunityServer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.refused, c.pulls, c.reporters, c.listed} {
		ch <- d
	}
}

func (c *CommunityServer) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src.CommunityServerStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.listed, err)
		return
	}
	counter(ch, c.accepted, uint64(max(st.Accepted, 0)))
	for _, r := range []struct {
		reason string
		v      int64
	}{{"malformed", st.Malformed}, {"canary", st.Canary}, {"rate_limited", st.RateLimited}, {"too_large", st.TooLarge}} {
		counter(ch, c.refused, uint64(max(r.v, 0)), r.reason)
	}
	counter(ch, c.pulls, uint64(max(st.Pulls, 0)))
	gauge(ch, c.reporters, float64(st.Reporters))
	gauge(ch, c.listed, float64(st.Listed))
}
