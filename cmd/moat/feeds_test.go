package main

import (
	"slices"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/config"
)

// Feeds start with the daemon: a reload that changes them says they need
// a restart and keeps the running ones.
func TestFeedsNeedRestart(t *testing.T) {
	running := config.Default()
	next := config.Default()
	next.Feeds = []config.Feed{{Name: "partner", File: "/l.txt", Interval: time.Hour, Duration: 2 * time.Hour, MaxEntries: 1, MaxBytes: 1}}
	if got := keepFrozen(running, &next); !slices.Equal(got, []string{"feeds"}) {
		t.Fatalf("needs restart %v, want [feeds]", got)
	}
	if len(next.Feeds) != 0 {
		t.Fatalf("the new feeds were taken: %+v", next.Feeds)
	}
}

// Without feeds the daemon's status and metrics show none.
func TestNoFeeds(t *testing.T) {
	var fs *feedSet
	if fs.collector() != nil {
		t.Error("a metrics collector without feeds")
	}
	st := api.Status{Counters: map[string]int64{"lines": 3}}
	fs.addStatus(&st)
	if len(st.Sources) != 0 || len(st.Counters) != 1 {
		t.Errorf("status without feeds: %+v", st)
	}
}
