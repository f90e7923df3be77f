package scenario

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestMatchElsewhereSameOverflows: events matched on other goroutines,
// then poured in order, overflow exactly as events poured whole.
func TestMatchElsewhereSameOverflows(t *testing.T) {
	path := writeScenario(t, sshLike)
	whole, err := Load([]string{path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	split, err := Load([]string{path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !split.MatchesAnywhere() {
		t.Fatal("a set without stash calls must allow matching on workers")
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 4000
	// Two workers match alternate halves side by side, as parse workers
	// do with batches.
	evts := make([]*Matches, n)
	var wg sync.WaitGroup
	for w := range 2 {
		m := split.NewMatcher()
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				evts[i] = &Matches{}
				m.Match(sshEvent(fmt.Sprintf("198.18.0.%d", i%3), fmt.Sprint("u", i), base.Add(time.Duration(i)*time.Second)), evts[i])
			}
		})
	}
	wg.Wait()
	var got, want []string
	for i := range n {
		ip, user, at := fmt.Sprintf("198.18.0.%d", i%3), fmt.Sprint("u", i), base.Add(time.Duration(i)*time.Second)
		for _, o := range whole.PourOverflows(sshEvent(ip, user, at)) {
			want = append(want, fmt.Sprintf("%d %s %s %d", i, o.Alert.Scenario, o.Alert.Source, o.Alert.EventsCount))
		}
		for _, o := range split.PourMatchedOverflows(sshEvent(ip, user, at), evts[i]) {
			got = append(got, fmt.Sprintf("%d %s %s %d", i, o.Alert.Scenario, o.Alert.Source, o.Alert.EventsCount))
		}
	}
	if len(want) == 0 {
		t.Fatal("no overflow to compare")
	}
	if !slices.Equal(got, want) {
		t.Errorf("matched elsewhere: %d overflows, whole: %d; first of each: %v / %v", len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
	}
}

// TestStashKeepsMatchingWithBuckets: a filter that reads a stash depends
// on the events before it, so its set must not be matched on workers.
func TestStashKeepsMatchingWithBuckets(t *testing.T) {
	for _, c := range []struct {
		field, expr string
		anywhere    bool
	}{
		{"filter", `"evt.Meta.log_type == 'ssh_failed-auth'"`, true},
		{"filter", `"GetFromStash('users', evt.Meta.source_ip) != ''"`, false},
		{"groupby", `"evt.Meta.source_ip + GetFromStash('users', evt.Meta.source_ip)"`, false},
	} {
		filter, groupby := `"evt.Meta.log_type == 'ssh_failed-auth'"`, "evt.Meta.source_ip"
		if c.field == "filter" {
			filter = c.expr
		} else {
			groupby = c.expr
		}
		body := "type: leaky\nname: test/stash\ndescription: stash\nfilter: " + filter + "\nleakspeed: 10s\ncapacity: 5\ngroupby: " + groupby + "\n"
		set, err := Load([]string{writeScenario(t, body)}, Options{})
		if err != nil {
			t.Fatalf("%s %s: %v", c.field, c.expr, err)
		}
		if got := set.MatchesAnywhere(); got != c.anywhere {
			t.Errorf("%s %s: MatchesAnywhere %v, want %v", c.field, c.expr, got, c.anywhere)
		}
	}
}
