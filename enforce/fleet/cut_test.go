package fleet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// A stream cut between a delta's events and its checkpoint leaves the
// agent holding the delta's decisions at the position before them. If
// one is deleted before the agent is back, the delta resumed from that
// position no longer names it, and carries no deletion of it either (the
// server sends deletions of decisions older than the position only): the
// agent must drop it at that delta's checkpoint, and keep those named
// again, each applied once.
func TestCutDeltaDropsWhatWasDeletedMeanwhile(t *testing.T) {
	until := time.Now().Add(time.Hour)
	line := func(ev api.FleetEvent) string {
		ev.At = time.Now()
		b, _ := json.Marshal(ev)
		return string(b) + "\n"
	}
	kept := api.FleetDecision{ID: 7, Value: "192.0.2.7", Type: "ban", Until: until}
	gone := api.FleetDecision{ID: 8, Value: "192.0.2.8", Type: "ban", Until: until}
	var streams atomic.Int64
	resumedAfter := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/watchers/login", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.LoginResponse{Code: 200, Token: "token", Expire: until.Format(time.RFC3339)})
	})
	mux.HandleFunc("GET "+api.FleetStreamPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		switch streams.Add(1) {
		case 1:
			// The startup, then a delta cut before its checkpoint.
			fmt.Fprint(w, line(api.FleetEvent{Kind: api.FleetCheckpoint, Seq: 1, Startup: true}))
			fmt.Fprint(w, line(api.FleetEvent{Kind: api.FleetNew, Decisions: []api.FleetDecision{kept, gone}}))
			return
		case 2:
			select {
			case resumedAfter <- r.URL.Query().Get("after"):
			default:
			}
			// From the same position: 8 was deleted meanwhile.
			fmt.Fprint(w, line(api.FleetEvent{Kind: api.FleetNew, Decisions: []api.FleetDecision{kept}}))
			fmt.Fprint(w, line(api.FleetEvent{Kind: api.FleetCheckpoint, Seq: 3}))
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	a := newAgent(t)
	a.run(t, hs.URL, nil)
	select {
	case after := <-resumedAfter:
		if after != "1" {
			t.Fatalf("resumed after %s, want 1 (the last checkpoint)", after)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not come back after the cut")
	}
	waitFor(t, "the resumed delta's checkpoint", func() bool { return a.client.Stats().Seq == 3 })
	if !a.enf.holds("192.0.2.7/32") {
		t.Error("the decision named again is not held")
	}
	if a.enf.holds("192.0.2.8/32") {
		t.Error("the decision deleted while the agent was away is still held")
	}
	if tw := a.enf.twice(); len(tw) > 0 {
		t.Errorf("applied more than once: %v", tw)
	}
}
