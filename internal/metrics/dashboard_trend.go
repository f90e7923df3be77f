package metrics

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"
)

const (
	// trendMinutes is how far back the status page's charts reach.
	trendMinutes = 24 * 60
	// trendMaxScenarios bounds the scenarios one minute keeps apart; the
	// rest of that minute is counted as trendOther. Scenario names reach
	// a fleet server from its agents, so their number is not ours to trust.
	trendMaxScenarios = 16
	trendOther        = "(other)"
	// trendNone names what carries no scenario (bans added by hand).
	trendNone = "(none)"
)

// trendSlot is one minute's counts by scenario. A short slice rather than
// maps: a full day of busy minutes then costs well under a megabyte.
type trendSlot struct {
	minute int64 // Unix minutes; 0 while unused
	counts []trendCount
}

type trendCount struct {
	scenario     string
	alerts, bans uint64
}

// trend is a ring of per-minute alert and ban counts over the last 24
// hours. It is fed by sampling the decision service's counters since
// start, so the hot path pays nothing for it and a restart of the metrics
// server loses only the chart, never a count that matters.
type trend struct {
	mu    sync.Mutex
	slots [trendMinutes]trendSlot
	// Cumulative counts at the last sample, by scenario.
	lastAlerts, lastBans map[string]uint64
}

func newTrend() *trend {
	return &trend{lastAlerts: map[string]uint64{}, lastBans: map[string]uint64{}}
}

// sample adds what was created since the last sample to now's minute. The
// first sample counts from zero, as the counters do from the daemon's
// start; a counter that went down was reset and counts from zero again.
func (t *trend) sample(now time.Time, dc DecisionCounts) {
	alerts, bans := byScenario(dc.Alerts), byScenario(dc.Decisions)
	t.mu.Lock()
	defer t.mu.Unlock()
	for s, v := range alerts {
		t.addLocked(now, s, delta(v, t.lastAlerts[s]), 0)
	}
	for s, v := range bans {
		t.addLocked(now, s, 0, delta(v, t.lastBans[s]))
	}
	t.lastAlerts, t.lastBans = alerts, bans
}

func delta(cur, last uint64) uint64 {
	if cur < last {
		return cur
	}
	return cur - last
}

func byScenario(cs []CreatedStat) map[string]uint64 {
	out := make(map[string]uint64, len(cs))
	for _, c := range cs {
		s := c.Scenario
		if s == "" {
			s = trendNone
		}
		out[s] += c.Count
	}
	return out
}

// add counts alerts and bans of scenario at at.
func (t *trend) add(at time.Time, scenario string, alerts, bans uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(at, scenario, alerts, bans)
}

func (t *trend) addLocked(at time.Time, scenario string, alerts, bans uint64) {
	if alerts == 0 && bans == 0 {
		return
	}
	m := at.Unix() / 60
	sl := &t.slots[int(m%trendMinutes)]
	if sl.minute != m {
		sl.minute, sl.counts = m, sl.counts[:0]
	}
	i := slices.IndexFunc(sl.counts, func(c trendCount) bool { return c.scenario == scenario })
	if i < 0 && len(sl.counts) >= trendMaxScenarios {
		scenario = trendOther
		i = slices.IndexFunc(sl.counts, func(c trendCount) bool { return c.scenario == trendOther })
	}
	if i < 0 {
		if len(sl.counts) == cap(sl.counts) {
			// Grow to at most the cap plus trendOther, not to append's
			// next power of two: a day of slots holds these.
			grown := make([]trendCount, len(sl.counts), min(max(4, 2*cap(sl.counts)), trendMaxScenarios+1))
			copy(grown, sl.counts)
			sl.counts = grown
		}
		sl.counts = append(sl.counts, trendCount{scenario: scenario})
		i = len(sl.counts) - 1
	}
	sl.counts[i].alerts += alerts
	sl.counts[i].bans += bans
}

// trendSeries is the counts of a span cut into equal steps, oldest first.
type trendSeries struct {
	Start time.Time
	Step  time.Duration
	// Alerts[i] and Bans[i] are the counts by scenario of step i.
	Alerts, Bans []map[string]uint64
}

// series cuts the span ending with the step now falls in into n steps of
// step (a whole number of minutes). Steps start at multiples of step, so
// bars keep their place between loads and their labels are round times.
func (t *trend) series(now time.Time, n int, step time.Duration) trendSeries {
	per := int64(step / time.Minute)
	if per < 1 {
		per = 1
	}
	end := (now.Unix()/60/per + 1) * per // exclusive
	start := end - int64(n)*per
	out := trendSeries{Start: time.Unix(start*60, 0), Step: time.Duration(per) * time.Minute,
		Alerts: make([]map[string]uint64, n), Bans: make([]map[string]uint64, n)}
	for i := range n {
		out.Alerts[i], out.Bans[i] = map[string]uint64{}, map[string]uint64{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for m := max(start, end-trendMinutes); m < end; m++ {
		sl := &t.slots[int(m%trendMinutes)]
		if sl.minute != m {
			continue
		}
		i := int((m - start) / per)
		for _, c := range sl.counts {
			if c.alerts > 0 {
				out.Alerts[i][c.scenario] += c.alerts
			}
			if c.bans > 0 {
				out.Bans[i][c.scenario] += c.bans
			}
		}
	}
	return out
}

// run samples d every interval until ctx ends.
func (t *trend) run(ctx context.Context, every time.Duration, d Decisions) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		if dc, err := d.DecisionCounts(ctx); err == nil {
			t.sample(time.Now(), dc)
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// topKeys lists the keys of the summed maps by total, largest first, names
// breaking ties.
func topKeys(ms []map[string]uint64) ([]string, map[string]uint64) {
	tot := map[string]uint64{}
	for _, m := range ms {
		for k, v := range m {
			tot[k] += v
		}
	}
	keys := make([]string, 0, len(tot))
	for k := range tot {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if tot[keys[i]] != tot[keys[j]] {
			return tot[keys[i]] > tot[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys, tot
}
