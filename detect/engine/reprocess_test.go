package engine

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/hub"
)

// reprocessConfig is the sshd parsers with the scenarios of
// testdata/reprocess named.
func reprocessConfig(t *testing.T, scenarios ...string) Config {
	t.Helper()
	dir := shared(t)
	cfg := hubConfig(dir)
	h, err := hub.Open(cfg.HubDir)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := h.Select(sshItems)
	if err != nil {
		t.Fatal(err)
	}
	sel.Scenarios = nil
	for _, s := range scenarios {
		sel.Scenarios = append(sel.Scenarios, filepath.Join("testdata", "reprocess", s))
	}
	cfg.Selection, cfg.Year = sel, 2024
	return cfg
}

// reprocessLines are failed sshd logins: bursts of four from 192.0.2.1 at
// 10:00, 10:10 and 10:20, one from 192.0.2.2 at 10:05, and two lone
// failures from 192.0.2.3.
func reprocessLines() []detect.Line {
	type burst struct {
		at time.Time
		ip string
		n  int
	}
	day := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	bursts := []burst{
		{day, "192.0.2.1", 4},
		{day.Add(2 * time.Minute), "192.0.2.3", 1},
		{day.Add(5 * time.Minute), "192.0.2.2", 4},
		{day.Add(10 * time.Minute), "192.0.2.1", 4},
		{day.Add(15 * time.Minute), "192.0.2.3", 1},
		{day.Add(20 * time.Minute), "192.0.2.1", 4},
	}
	var out []detect.Line
	for _, b := range bursts {
		for i := range b.n {
			at := b.at.Add(time.Duration(i) * time.Second)
			raw := fmt.Sprintf("%s host sshd[%d]: Invalid user admin from %s port 22", at.Format(time.Stamp), 100+i, b.ip)
			out = append(out, detect.Line{Raw: raw, Src: "auth.log", Module: "file", Labels: map[string]string{"type": "syslog"}, Process: true, ReadAt: at})
		}
	}
	return out
}

// alertKeys lists each alert of la as scenario/value, by line.
func alertKeys(la []lineAlerts) map[int][]string {
	out := map[int][]string{}
	for _, l := range la {
		for _, a := range l.Alerts {
			out[l.Line] = append(out[l.Line], a.Scenario+"/"+a.Value)
		}
	}
	return out
}

// TestReprocess: a scenario with reprocess: true has its overflows poured
// into the scenarios again, where a recidive scenario counts them; the
// recidive's alert comes with the line that caused the overflow it
// counted, and parse workers give the same alerts and counters. Without
// a scenario that takes overflows, they are counted as poured and change
// nothing.
func TestReprocess(t *testing.T) {
	bursts := map[int][]string{
		2:  {"test/ssh-bf/192.0.2.1"},
		7:  {"test/ssh-bf/192.0.2.2"},
		11: {"test/ssh-bf/192.0.2.1"},
		16: {"test/ssh-bf/192.0.2.1"},
	}
	withRecidive := maps.Clone(bursts)
	withRecidive[16] = append(slices.Clone(bursts[16]), "test/ssh-recidive/192.0.2.1")
	for _, tc := range []struct {
		name      string
		scenarios []string
		want      map[int][]string
	}{
		{"recidive", []string{"ssh-bf.yaml", "recidive.yaml"}, withRecidive},
		{"no taker", []string{"ssh-bf.yaml"}, bursts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := reprocessConfig(t, tc.scenarios...)
			lines := reprocessLines()
			got, st := serialRun(t, cfg, lines)
			if g := alertKeys(got); fmt.Sprint(g) != fmt.Sprint(tc.want) {
				t.Errorf("alerts by line:\n got %v\nwant %v", g, tc.want)
			}
			for _, l := range got {
				for _, a := range l.Alerts {
					if a.Scenario == "test/ssh-recidive" && (a.EventsCount != 3 || len(a.Events) != 3 || a.Meta["source_ip"] != "192.0.2.1") {
						t.Errorf("recidive alert: %d events, %d event metas, meta %v", a.EventsCount, len(a.Events), a.Meta)
					}
				}
			}
			if st.Reprocessed != 4 || st.ReprocessDropped != 0 {
				t.Errorf("reprocessed %d, dropped %d, want 4 and 0", st.Reprocessed, st.ReprocessDropped)
			}
			for _, sc := range st.Scenarios.Scenarios {
				if sc.Errors != 0 {
					t.Errorf("%s: %d expression errors", sc.Name, sc.Errors)
				}
				if sc.Name == "test/ssh-recidive" && sc.Pours != 4 {
					t.Errorf("recidive poured %d overflows, want 4", sc.Pours)
				}
			}
			sameAsSerial(t, "reprocess "+tc.name, cfg, lines, 2)
		})
	}
}

// TestReprocessLoop: a scenario fed by its own overflows, which CrowdSec
// would pour forever, stops at the depth bound, the same with parse
// workers.
func TestReprocessLoop(t *testing.T) {
	cfg := reprocessConfig(t, "ssh-bf.yaml", "loop.yaml")
	lines := reprocessLines()
	done := make(chan struct{})
	var got []lineAlerts
	var st Stats
	go func() {
		defer close(done)
		got, st = serialRun(t, cfg, lines)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("an overflow feeding itself did not stop")
	}
	// Four ssh-bf overflows, each followed by a chain of loop overflows
	// as deep as the bound.
	const chains = 4
	keys := alertKeys(got)
	for line, k := range keys {
		loops := slices.DeleteFunc(slices.Clone(k), func(s string) bool { return s != "test/loop/192.0.2.1" && s != "test/loop/192.0.2.2" })
		if len(k) != 1+maxReprocessDepth || len(loops) != maxReprocessDepth {
			t.Errorf("line %d: alerts %v, want one ssh-bf and %d loop", line, k, maxReprocessDepth)
		}
	}
	if len(keys) != chains {
		t.Errorf("alerts on %d lines, want %d", len(keys), chains)
	}
	if st.Reprocessed != chains*maxReprocessDepth || st.ReprocessDropped != chains {
		t.Errorf("reprocessed %d, dropped %d, want %d and %d", st.Reprocessed, st.ReprocessDropped, chains*maxReprocessDepth, chains)
	}
	sameAsSerial(t, "reprocess loop", cfg, lines, 2)
}

// TestReprocessFlush: overflows a replay's end makes (counters) are
// poured again, and the buckets they fill end with the replay too.
func TestReprocessFlush(t *testing.T) {
	cfg := reprocessConfig(t, "counters.yaml")
	lines := reprocessLines()
	got, st := serialRun(t, cfg, lines)
	keys := alertKeys(got)
	want := []string{
		"test/ssh-count/192.0.2.1", "test/ssh-count/192.0.2.2", "test/ssh-count/192.0.2.3",
		"test/ssh-count-sources/192.0.2.1", "test/ssh-count-sources/192.0.2.2", "test/ssh-count-sources/192.0.2.3",
	}
	if len(keys) != 1 || !slices.Equal(keys[len(lines)], want) {
		t.Errorf("alerts by line %v, want %v at the flush", keys, want)
	}
	if st.Reprocessed != 3 || st.Scenarios.Buckets != 0 {
		t.Errorf("reprocessed %d, %d buckets left, want 3 and 0", st.Reprocessed, st.Scenarios.Buckets)
	}
	sameAsSerial(t, "reprocess flush", cfg, lines, 2)
}
