package storetest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// expiryStore is how the daemon keeps the expiries of runtime allowlist
// entries (enforce/allowlist.ExpiryStore).
type expiryStore interface {
	AddAllow(ctx context.Context, e store.AllowEntry) error
	SetAllowExpiry(ctx context.Context, value netip.Prefix, t time.Time) error
	AllowExpiries(ctx context.Context) (map[netip.Prefix]time.Time, error)
}

// allowExpiry: an expiry is kept per entry, cleared by the zero time, and
// refused for an entry that does not exist.
func allowExpiry(t *testing.T, s Store) {
	es, ok := s.(expiryStore)
	if !ok {
		t.Fatalf("%T keeps no allowlist expiry", s)
	}
	ctx := context.Background()
	office, vendor := netip.MustParsePrefix("198.18.1.0/24"), ip("198.18.2.7")
	for _, p := range []netip.Prefix{office, vendor} {
		if err := es.AddAllow(ctx, store.AllowEntry{Value: p, Reason: "test", Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := es.SetAllowExpiry(ctx, vendor, until); err != nil {
		t.Fatal(err)
	}
	got, err := es.AllowExpiries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[vendor].Equal(until) {
		t.Errorf("expiries %v, want only %s until %s", got, vendor, until)
	}
	if err := es.SetAllowExpiry(ctx, vendor, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := es.AllowExpiries(ctx); len(got) != 0 {
		t.Errorf("after clearing: %v", got)
	}
	if err := es.SetAllowExpiry(ctx, ip("198.18.3.3"), until); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expiry of a missing entry: %v, want ErrNotFound", err)
	}
}
