package main

import (
	"context"
	"time"

	"github.com/moatsec/moat/detect/grok"
	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/community/client"
	"github.com/moatsec/moat/enforce/community/server"
	"github.com/moatsec/moat/enforce/notify"
	"github.com/moatsec/moat/internal/metrics"
)

// The metrics server names the engine's and the reconciler's counters in
// types of its own, internal/ being below detect and enforce; these views
// copy the components' snapshots into them at scrape time.

type engineMetrics struct{ r *engineRef }

func (m engineMetrics) Stats() metrics.EngineStats {
	st := m.r.Stats()
	out := metrics.EngineStats{Lines: st.Lines, Parsed: st.Parsed, Unparsed: st.Unparsed, Whitelisted: st.Whitelisted,
		Reprocessed: st.Reprocessed, ReprocessDropped: st.ReprocessDropped,
		ProxyRewritten: st.Proxies.Rewritten, ProxyRefused: st.Proxies.Refused, ContextErrors: st.ContextErrors,
		GrokPatterns: make(map[string]int, len(st.GrokPatterns))}
	for tier, n := range st.GrokPatterns {
		out.GrokPatterns[grok.Tier(tier).String()] = n
	}
	out.Parsers = make([]metrics.ParserStat, len(st.Parsers))
	for i, n := range st.Parsers {
		out.Parsers[i] = metrics.ParserStat{Stage: n.Stage, Parser: n.Parser, Hits: n.Hits, Parsed: n.Parsed}
	}
	out.Scenarios = make([]metrics.ScenarioStat, len(st.Scenarios.Scenarios))
	for i, s := range st.Scenarios.Scenarios {
		out.Scenarios[i] = metrics.ScenarioStat{
			Name: s.Name, Pours: s.Pours, Overflows: s.Overflows, Evictions: s.Evictions, Errors: s.Errors,
			Buckets: s.Buckets, MaxBuckets: s.MaxBuckets, Degraded: s.Degraded,
			SketchPours: s.SketchPours, Promotions: s.Promotions, SketchLost: s.SketchLost,
		}
	}
	return out
}

type reconcilerMetrics struct{ r *enforce.Reconciler }

func (m reconcilerMetrics) Stats() metrics.ReconcilerStats {
	st := m.r.Stats()
	out := metrics.ReconcilerStats{
		Batches: st.Batches, ApplyErrors: st.ApplyErrors, Refused: st.Refused, Drift: st.Drift,
		Entries: st.Entries, LastApply: st.LastApply,
	}
	for _, b := range st.Repairs {
		for k, n := range b.Count {
			out.Repairs = append(out.Repairs, metrics.RepairStat{Backend: b.Backend, Kind: enforce.RepairKinds[k], Count: n})
		}
	}
	return out
}

// notifyMetrics copies the channels' counters for the metrics server.
type notifyMetrics struct{ m *notify.Manager }

func (n notifyMetrics) NotifyStats() []metrics.NotifyStat {
	var out []metrics.NotifyStat
	for _, s := range n.m.Stats() {
		out = append(out, metrics.NotifyStat{
			Name: s.Name, Kind: s.Kind, Sent: s.Sent, Failed: s.Failed, Dropped: s.Dropped, Queued: s.Queued,
			LatencyBounds: notify.LatencyBounds(), Buckets: s.Latency.Counts, LatencyCount: s.Latency.Count, LatencySum: s.Latency.Sum,
		})
	}
	return out
}

// communityClientMetrics copies the community client's counters.
type communityClientMetrics struct{ c *client.Client }

func (m communityClientMetrics) CommunityClientStats() metrics.CommunityClientStats {
	st := m.c.Stats()
	return metrics.CommunityClientStats{Sent: st.Sent, Dropped: st.Dropped, Queued: int64(st.Queued),
		Pulls: st.Pulls, PullErrors: st.PullErrors, Held: st.Held}
}

// communityServerMetrics reads the community server's counters, and
// counts its reporters and listed addresses, at scrape time.
type communityServerMetrics struct{ s *server.Server }

func (m communityServerMetrics) CommunityServerStats() (metrics.CommunityServerStats, error) {
	st := m.s.Stats()
	// A scrape must not hang on a stuck database: the scrape fails instead.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := m.s.Counts(ctx)
	if err != nil {
		return metrics.CommunityServerStats{}, err
	}
	return metrics.CommunityServerStats{Accepted: st.Signals, Malformed: st.Dropped, Canary: st.Canaries, RateLimited: st.Limited,
		TooLarge: st.TooLarge, Pulls: st.Pulls, Reporters: n.Reporters, Listed: n.Listed}, nil
}
