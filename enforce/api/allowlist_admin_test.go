package api

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// TestAllowlistEndpoints: an entry added with a comment and an expiry
// lifts the ban it covers and is what check names; an address no entry
// covers is said to be unprotected, loopback to be protected by moat
// itself.
func TestAllowlistEndpoints(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "moat-allow-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(dir, store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := decision.New(st, &profile.Set{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := dynallow.NewRuntime(ctx, svc, st)
	if err != nil {
		t.Fatal(err)
	}
	m := dynallow.New(dynallow.Config{Runtime: rt.Entries})
	ban := []model.Decision{{Value: netip.MustParsePrefix("198.18.3.3/32"), Type: "ban", Origin: model.OriginCLI, Scenario: "test", Until: time.Now().Add(time.Hour)}}
	if err := svc.Add(ctx, ban); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	AllowlistAdminRoutes(mux, AllowlistAdmin{Manager: m, Runtime: rt, Builtin: func(p netip.Prefix) error {
		if p.Addr().IsLoopback() {
			return &decisionRefusal{"loopback"}
		}
		return nil
	}})
	sock := filepath.Join(dir, "s.sock")
	sl, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(sl)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(sock)

	until := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	res, err := c.AddAllowEntry(ctx, AllowEntryRequest{Value: "198.18.3.0/24", Comment: "vendor", Expires: until})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Lifted) != 1 || res.Lifted[0].Value != "198.18.3.3" {
		t.Errorf("lifted %+v, want the ban on 198.18.3.3", res.Lifted)
	}
	m.Step(context.Background()) // what Run does on Refresh
	chk, err := c.CheckAllow(ctx, "198.18.3.77")
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Protected || len(chk.Entries) != 1 {
		t.Fatalf("check %+v", chk)
	}
	e := chk.Entries[0]
	if e.Value != "198.18.3.0/24" || e.Comment != "vendor" || !e.Expires.Equal(until) || e.Source != dynallow.SourceRuntime {
		t.Errorf("entry %+v", e)
	}
	if chk, err := c.CheckAllow(ctx, "198.18.4.1"); err != nil || chk.Protected || len(chk.Entries) != 0 {
		t.Errorf("check of an address no entry covers: %+v, %v", chk, err)
	}
	if chk, err := c.CheckAllow(ctx, "127.0.0.1"); err != nil || !chk.Protected || chk.Builtin != "loopback" {
		t.Errorf("check of loopback: %+v, %v", chk, err)
	}
	if _, err := c.CheckAllow(ctx, "home.example"); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("check of a name: %v, want 400", err)
	}
	if _, err := c.AddAllowEntry(ctx, AllowEntryRequest{Value: "198.18.5.0/24", Comment: "late", Expires: time.Now().Add(-time.Hour)}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("an entry already expired: %v, want 400", err)
	}
}

type decisionRefusal struct{ reason string }

func (e *decisionRefusal) Error() string { return e.reason }
