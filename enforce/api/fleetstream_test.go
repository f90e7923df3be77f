package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// fleetReader reads a fleet stream's events.
type fleetReader struct {
	t    *testing.T
	resp *http.Response
	ev   chan FleetEvent
}

func (m *machineFixture) openFleet(t *testing.T, token string, after int64) *fleetReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", m.mach.URL+FleetStreamPath+"?after="+strconv.FormatInt(after, 10), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fleet stream: %d", resp.StatusCode)
	}
	r := &fleetReader{t: t, resp: resp, ev: make(chan FleetEvent, 100)}
	go func() {
		defer close(r.ev)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev FleetEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("malformed event %q: %v", sc.Bytes(), err)
				return
			}
			r.ev <- ev
		}
	}()
	return r
}

// next returns the next event that is not a heartbeat; ok is false when
// the stream ended.
func (r *fleetReader) next() (FleetEvent, bool) {
	r.t.Helper()
	for {
		select {
		case ev, ok := <-r.ev:
			if !ok {
				return ev, false
			}
			if ev.Kind != FleetHeartbeat {
				return ev, true
			}
		case <-time.After(5 * time.Second):
			r.t.Fatal("no event within 5s")
		}
	}
}

func (m *machineFixture) addBan(t *testing.T, v string, simulated bool) int64 {
	t.Helper()
	ds := []model.Decision{{Value: netip.MustParsePrefix(v), Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(time.Hour), Simulated: simulated}}
	if err := m.svc.Add(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return ds[0].ID
}

func TestFleetStream(t *testing.T) {
	m := newMachineFixture(t)
	m.srv.FleetHeartbeat = 50 * time.Millisecond
	if code, _ := m.call(t, "GET", FleetStreamPath, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	tok := m.login(t, "agent-1")
	id1 := m.addBan(t, "192.0.2.1/32", false)
	m.addBan(t, "192.0.2.2/32", true)

	// After 0: the active set, simulated left out, then its checkpoint.
	r := m.openFleet(t, tok, 0)
	ev, _ := r.next()
	if ev.Kind != FleetNew || len(ev.Decisions) != 1 || ev.Decisions[0].ID != id1 || ev.Decisions[0].Value != "192.0.2.1" {
		t.Fatalf("first event %+v, want the one enforced ban", ev)
	}
	cp, _ := r.next()
	if cp.Kind != FleetCheckpoint || !cp.Startup || cp.Seq <= 0 {
		t.Fatalf("checkpoint %+v", cp)
	}
	// Then each change as it comes, with heartbeats between.
	id3 := m.addBan(t, "192.0.2.3/32", false)
	if ev, _ := r.next(); ev.Kind != FleetNew || ev.Decisions[0].ID != id3 {
		t.Fatalf("event %+v, want the new ban", ev)
	}
	next, _ := r.next()
	if next.Kind != FleetCheckpoint || next.Startup || next.Seq <= cp.Seq {
		t.Fatalf("checkpoint %+v after %d", next, cp.Seq)
	}
	if _, err := m.svc.Delete(context.Background(), store.Filter{ID: id1}); err != nil {
		t.Fatal(err)
	}
	if ev, _ := r.next(); ev.Kind != FleetDeleted || ev.Decisions[0].ID != id1 {
		t.Fatalf("event %+v, want the deletion", ev)
	}
	r.next()
	hb := false
	for !hb {
		select {
		case ev := <-r.ev:
			hb = ev.Kind == FleetHeartbeat && ev.Seq > next.Seq
		case <-time.After(2 * time.Second):
			t.Fatal("no heartbeat")
		}
	}

	// Resuming from a position sends only what came after it.
	r2 := m.openFleet(t, tok, next.Seq)
	if ev, _ := r2.next(); ev.Kind != FleetDeleted || ev.Decisions[0].ID != id1 {
		t.Fatalf("resumed stream's first event %+v, want only the deletion", ev)
	}
	// A third stream of the machine ends its oldest: an agent that
	// reconnects never waits for its dead stream to time out.
	m.openFleet(t, tok, 0)
	for {
		if _, ok := r.next(); !ok {
			break
		}
	}
	// A position the store never reached (a new store) is a startup.
	r4 := m.openFleet(t, tok, 1<<40)
	r4.next()
	if cp, _ := r4.next(); cp.Kind != FleetCheckpoint || !cp.Startup {
		t.Fatalf("stream ahead of the store: %+v, want a startup", cp)
	}
}
