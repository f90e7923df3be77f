package main

import (
	"context"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/feed"
	"github.com/moatsec/moat/internal/metrics"
)

// feedSet is the list feeds the daemon runs; nil when none is configured.
type feedSet struct {
	feeds []*feed.Feed
}

// startFeeds builds the configured list feeds (none by default) over the
// decision service and adds each one's pull loop to the daemon's services.
func (m *daemon) startFeeds(svc *decision.Service) error {
	if len(m.cfg.Feeds) == 0 {
		return nil
	}
	fs := &feedSet{}
	for _, fc := range m.cfg.Feeds {
		f, err := feed.New(feed.Config{
			Name: fc.Name, URL: fc.URL, File: fc.File,
			Interval: fc.Interval, Duration: fc.Duration,
			MaxEntries: fc.MaxEntries, MaxBytes: fc.MaxBytes,
		}, svc)
		if err != nil {
			return err
		}
		log := m.log.With("component", "feed", "feed", fc.Name)
		m.services = append(m.services, func(ctx context.Context) error {
			return f.Run(ctx, func(err error) {
				log.Warn("feed pull failed; its decisions are kept until they expire", "err", err)
			})
		})
		fs.feeds = append(fs.feeds, f)
		log.Info("list feed on", "source", f.Source(), "interval", fc.Interval, "duration", fc.Duration)
	}
	m.feeds = fs
	return nil
}

// addStatus adds the feeds to the daemon's status, as sources of kind
// feed whose lines are the decisions held.
func (s *feedSet) addStatus(st *api.Status) {
	if s == nil {
		return
	}
	if st.Counters == nil {
		st.Counters = map[string]int64{}
	}
	for _, f := range s.feeds {
		fs := f.Stats()
		st.Sources = append(st.Sources, api.Source{Name: fs.Name, Kind: "feed", Lines: int64(fs.Held), Error: fs.LastError})
		st.Counters["feed_pulls"] += fs.Pulls
		st.Counters["feed_pulls_failed"] += fs.Failures
	}
}

// collector is the feeds' metrics, nil when there is no feed.
func (s *feedSet) collector() *metrics.Feeds {
	if s == nil {
		return nil
	}
	return metrics.NewFeeds(s)
}

func (s *feedSet) FeedStats() []metrics.FeedStats {
	out := make([]metrics.FeedStats, 0, len(s.feeds))
	for _, f := range s.feeds {
		fs := f.Stats()
		out = append(out, metrics.FeedStats{Name: fs.Name, Pulls: fs.Pulls, Failures: fs.Failures, Held: fs.Held, LastSuccess: fs.LastSuccess, Allowlisted: fs.Allowlisted, Capped: fs.Capped})
	}
	return out
}
