package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moatsec/moat/enforce/community/wire"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

// stubStream serves login and a decision stream the test sets.
type stubStream struct {
	mu     sync.Mutex
	stream wire.StreamV3
}

func (s *stubStream) set(v wire.StreamV3) { s.mu.Lock(); s.stream = v; s.mu.Unlock() }

func (s *stubStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/v3/watchers/login":
		json.NewEncoder(w).Encode(wire.LoginResponse{Code: 200, Token: "t"})
	case "/v3/decisions/stream":
		json.NewEncoder(w).Encode(s.stream)
	default:
		http.NotFound(w, r)
	}
}

func list(values map[string]string) wire.StreamV3 {
	var g wire.NewGroup
	g.Scenario, g.Scope = sshBF, "ip"
	for v, d := range values {
		g.Decisions = append(g.Decisions, wire.NewDecision{Value: v, Duration: d})
	}
	return wire.StreamV3{New: []wire.NewGroup{g}}
}

// Pulls keep unchanged listings as they are, replace a refreshed one
// before deleting the old, drop what left the list, refuse what may not
// be banned here, and hold at most MaxPulled.
func TestPullApplies(t *testing.T) {
	stub := &stubStream{}
	hs := httptest.NewServer(stub)
	defer hs.Close()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, _ := profile.Parse("p", packaging.DefaultProfiles)
	svc, err := decision.New(st, ps, nil, netip.MustParsePrefix("81.2.69.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{Credentials: Credentials{Server: hs.URL, MachineID: "m", Password: "p"}, HTTP: hs.Client(), Decisions: svc, Pull: true, MaxPulled: 3})
	if err != nil {
		t.Fatal(err)
	}
	held := func() map[string]int64 {
		recs, err := svc.List(context.Background(), store.Filter{Origin: string(model.OriginCommunity)})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, r := range recs {
			out[r.Value.Addr().String()] = r.ID
		}
		return out
	}
	ctx := context.Background()
	stub.set(list(map[string]string{"45.77.40.1": "24h", "45.77.40.2": "24h", "10.0.0.1": "24h", "81.2.69.9": "24h", "45.77.40.3": "bogus"}))
	res, err := cl.pull(ctx, true)
	if err != nil || res.Added != 2 || res.Refused != 3 {
		t.Fatalf("first pull: %+v %v", res, err)
	}
	first := held()
	// The same list again: nothing rewritten.
	if res, err := cl.pull(ctx, true); err != nil || res.Added != 0 || res.Deleted != 0 {
		t.Fatalf("same list: %+v %v", res, err)
	}
	// 40.1 refreshed to a longer expiry (a new decision, then the old
	// one deleted), 40.2 gone, two new.
	stub.set(list(map[string]string{"45.77.40.1": "48h", "45.77.40.4": "24h", "45.77.40.5": "24h"}))
	res, err = cl.pull(ctx, true)
	if err != nil || res.Deleted != 2 || res.Added != 3 {
		t.Fatalf("startup pull, changed list: %+v %v", res, err)
	}
	now := held()
	if _, ok := now["45.77.40.2"]; ok || now["45.77.40.1"] == first["45.77.40.1"] || len(now) != 3 {
		t.Fatalf("held %v (was %v)", now, first)
	}
	// A delta deletes.
	stub.set(wire.StreamV3{Deleted: []wire.DeletedGroup{{Scope: "ip", Decisions: []string{"45.77.40.4"}}}})
	if res, err := cl.pull(ctx, false); err != nil || res.Deleted != 1 {
		t.Fatalf("delta: %+v %v", res, err)
	}
	if got := held(); len(got) != 2 || got["45.77.40.4"] != 0 {
		t.Fatalf("after delta: %v", got)
	}
	// Two new with room for one: the cap of three holds.
	stub.set(list(map[string]string{"45.77.40.6": "24h", "45.77.40.7": "24h"}))
	if res, err := cl.pull(ctx, false); err != nil || res.Added != 1 || res.Refused != 1 || len(held()) != 3 {
		t.Fatalf("past the cap: %+v %v %v", res, err, held())
	}
}
