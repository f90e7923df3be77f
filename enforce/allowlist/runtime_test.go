package allowlist

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

func openService(t *testing.T) (*decision.Service, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), store.FileName), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := decision.New(st, &profile.Set{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func ban(t *testing.T, svc *decision.Service, values ...string) {
	t.Helper()
	for _, v := range values {
		p, _ := model.ParseValue(v)
		d := []model.Decision{{Value: p, Type: "ban", Origin: model.OriginCLI, Scenario: "test", Until: time.Now().Add(time.Hour)}}
		if err := svc.Add(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
}

// Runtime entries carry their comment and expiry, survive a restart, and
// are removed once expired.
func TestRuntimeEntries(t *testing.T) {
	svc, st := openService(t)
	ctx := context.Background()
	r, err := NewRuntime(ctx, svc, st)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	if _, err := r.Add(ctx, pfx("198.18.3.0/24"), "vendor", until, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, pfx("198.18.3.9/32"), "late", time.Now().Add(-time.Minute), false); !errors.Is(err, decision.ErrInvalid) {
		t.Errorf("an entry already expired: %v, want ErrInvalid", err)
	}
	if _, err := r.Add(ctx, pfx("198.18.4.1/32"), "monitoring", time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	again, err := NewRuntime(ctx, svc, st)
	if err != nil {
		t.Fatal(err)
	}
	es := again.Entries()
	if len(es) != 2 || es[0].Value != "198.18.3.0/24" || es[0].Comment != "vendor" || !es[0].Expires.Equal(until) || !es[1].Expires.IsZero() {
		t.Fatalf("entries after reopening: %+v", es)
	}
	if err := again.Expire(ctx, es[0]); err != nil {
		t.Fatal(err)
	}
	if es := again.Entries(); len(es) != 1 || es[0].Value != "198.18.4.1" {
		t.Errorf("after expiry: %+v", es)
	}
	noExp, _ := NewRuntime(ctx, svc, nil)
	if _, err := noExp.Add(ctx, pfx("198.18.5.5/32"), "x", until, false); !errors.Is(err, ErrNoExpiry) {
		t.Errorf("expiry without a store to keep it: %v", err)
	}
}

// Bans on addresses that become protected are lifted: by address (and the
// ranges covering it) and inside a protected range.
func TestLift(t *testing.T) {
	svc, _ := openService(t)
	ctx := context.Background()
	ban(t, svc, "198.18.6.1", "198.18.7.0/24", "198.18.8.5", "198.18.8.200", "198.18.9.9")
	lifted, err := Lift(ctx, svc, []netip.Prefix{pfx("198.18.6.1/32"), pfx("198.18.7.7/32"), pfx("198.18.8.0/25")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range lifted {
		got = append(got, model.ValueString(d.Value))
	}
	want := map[string]bool{"198.18.6.1": true, "198.18.7.0/24": true, "198.18.8.5": true}
	if len(got) != len(want) {
		t.Errorf("lifted %v, want %v", got, want)
	}
	for _, v := range got {
		if !want[v] {
			t.Errorf("lifted %s, which no entry covers", v)
		}
	}
	active, _ := svc.ActiveDecisions(ctx)
	if len(active) != 2 {
		t.Errorf("still active %v, want 198.18.8.200 and 198.18.9.9", active)
	}
}
