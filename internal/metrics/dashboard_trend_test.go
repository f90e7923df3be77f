package metrics

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var trendT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func created(kv ...any) []CreatedStat {
	var out []CreatedStat
	for i := 0; i < len(kv); i += 2 {
		out = append(out, CreatedStat{Scenario: kv[i].(string), Origin: "local", Count: uint64(kv[i+1].(int))})
	}
	return out
}

func TestTrendSample(t *testing.T) {
	type sample struct {
		at    time.Duration // after trendT0
		alert []CreatedStat
		ban   []CreatedStat
	}
	tests := []struct {
		name    string
		samples []sample
		// wantBans is the bans of the last 5 minutes, minute by minute.
		wantBans []map[string]uint64
	}{
		{name: "first sample counts from zero",
			samples:  []sample{{at: 4 * time.Minute, ban: created("a", 3)}},
			wantBans: []map[string]uint64{{}, {}, {}, {}, {"a": 3}}},
		{name: "deltas land in their minute",
			samples: []sample{
				{at: 0, ban: created("a", 1)},
				{at: 30 * time.Second, ban: created("a", 2)},
				{at: 2 * time.Minute, ban: created("a", 5, "b", 1)},
				{at: 4 * time.Minute, ban: created("a", 5, "b", 1)},
			},
			wantBans: []map[string]uint64{{"a": 2}, {}, {"a": 3, "b": 1}, {}, {}}},
		{name: "origins of one scenario add up, no scenario is (none)",
			samples:  []sample{{at: 4 * time.Minute, ban: append(created("a", 1, "", 2), CreatedStat{Scenario: "a", Origin: "api", Count: 4})}},
			wantBans: []map[string]uint64{{}, {}, {}, {}, {"a": 5, trendNone: 2}}},
		{name: "a counter reset counts from zero again",
			samples: []sample{
				{at: 0, ban: created("a", 10)},
				{at: 4 * time.Minute, ban: created("a", 2)},
			},
			wantBans: []map[string]uint64{{"a": 10}, {}, {}, {}, {"a": 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrend()
			for _, s := range tc.samples {
				tr.sample(trendT0.Add(s.at), DecisionCounts{Alerts: s.alert, Decisions: s.ban})
			}
			got := tr.series(trendT0.Add(4*time.Minute), 5, time.Minute)
			if !got.Start.Equal(trendT0) {
				t.Errorf("start %v, want %v", got.Start, trendT0)
			}
			if d := cmp.Diff(tc.wantBans, got.Bans); d != "" {
				t.Errorf("bans (-want +got):\n%s", d)
			}
		})
	}
}

func TestTrendSeriesSteps(t *testing.T) {
	tr := newTrend()
	// One ban a minute for two hours, then ask for the last hour in steps
	// of 15 minutes.
	for m := range 120 {
		tr.add(trendT0.Add(time.Duration(m)*time.Minute), "a", 2, 1)
	}
	now := trendT0.Add(119*time.Minute + 30*time.Second)
	got := tr.series(now, 4, 15*time.Minute)
	if want := trendT0.Add(time.Hour); !got.Start.Equal(want) {
		t.Errorf("start %v, want %v", got.Start, want)
	}
	for i := range 4 {
		if got.Bans[i]["a"] != 15 || got.Alerts[i]["a"] != 30 {
			t.Errorf("step %d: bans %d alerts %d, want 15 and 30", i, got.Bans[i]["a"], got.Alerts[i]["a"])
		}
	}
}

// TestTrendRing checks the ring forgets what is older than 24 hours, even
// when asked for more, and reuses the slot of a minute a day ago.
func TestTrendRing(t *testing.T) {
	tr := newTrend()
	tr.add(trendT0, "old", 0, 7)
	tr.add(trendT0.Add(24*time.Hour), "new", 0, 1) // same slot, a day later
	got := tr.series(trendT0.Add(24*time.Hour), 2*trendMinutes, time.Minute)
	sum := map[string]uint64{}
	for _, m := range got.Bans {
		for k, v := range m {
			sum[k] += v
		}
	}
	if d := cmp.Diff(map[string]uint64{"new": 1}, sum); d != "" {
		t.Errorf("bans over two days (-want +got):\n%s", d)
	}
	// Without the newer write, a day-old minute is out of any range.
	tr = newTrend()
	tr.add(trendT0, "old", 0, 7)
	got = tr.series(trendT0.Add(24*time.Hour), trendMinutes, time.Minute)
	for i, m := range got.Bans {
		if len(m) != 0 {
			t.Errorf("step %d holds %v from a day ago", i, m)
		}
	}
}

// TestTrendScenarioCap checks a flood of scenario names cannot grow a
// minute past trendMaxScenarios: the excess is counted as one.
func TestTrendScenarioCap(t *testing.T) {
	tr := newTrend()
	dc := DecisionCounts{}
	for i := range 1000 {
		dc.Alerts = append(dc.Alerts, CreatedStat{Scenario: fmt.Sprintf("s%04d", i), Count: 1})
		dc.Decisions = append(dc.Decisions, CreatedStat{Scenario: fmt.Sprintf("s%04d", i), Count: 2})
	}
	tr.sample(trendT0, dc)
	if sl := tr.slots[int(trendT0.Unix()/60%trendMinutes)]; cap(sl.counts) > trendMaxScenarios+1 {
		t.Errorf("slot holds room for %d scenarios, want at most %d", cap(sl.counts), trendMaxScenarios+1)
	}
	got := tr.series(trendT0, 1, time.Minute)
	for name, m := range map[string]map[string]uint64{"alerts": got.Alerts[0], "bans": got.Bans[0]} {
		if len(m) > trendMaxScenarios+1 {
			t.Errorf("%s: %d scenarios kept, want at most %d", name, len(m), trendMaxScenarios+1)
		}
		if m[trendOther] == 0 {
			t.Errorf("%s: nothing counted as %s", name, trendOther)
		}
		var sum uint64
		for v := range maps.Values(m) {
			sum += v
		}
		want := uint64(1000)
		if name == "bans" {
			want = 2000
		}
		if sum != want {
			t.Errorf("%s: %d counted, want %d", name, sum, want)
		}
	}
}

// TestServeSamplesTrend checks Serve feeds the charts from the decision
// service: a ban made while serving shows in the bans chart.
func TestServeSamplesTrend(t *testing.T) {
	w := newWorld()
	s, err := New(Config{Decisions: w, Status: w, TrendInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, s)
	// The first sample counts what the world created before serving.
	want := uint64(4 + 1) // ssh-bf and the hand-made ban
	w.ban("198.18.0.9", "crowdsecurity/ssh-bf", time.Millisecond, s.Latency().Applied)
	want++
	deadline := time.Now().Add(30 * time.Second)
	for {
		ts := s.trend.series(time.Now(), 60, time.Minute)
		var got uint64
		for _, m := range ts.Bans {
			for _, v := range m {
				got += v
			}
		}
		if got == want {
			break
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("bans in the last hour: %d, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, body := get(t, base+"/?range=1h")
	if !strings.Contains(string(body), fmt.Sprintf(`id="bans-total">%d<`, want)) {
		t.Errorf("page does not show %d bans in the last hour", want)
	}
}
