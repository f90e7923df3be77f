package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestAllowExpiry(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	office, vendor := netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.18.2.7/32")
	for _, p := range []netip.Prefix{office, vendor} {
		if err := s.AddAllow(ctx, AllowEntry{Value: p, Reason: "test", Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.SetAllowExpiry(ctx, vendor, until); err != nil {
		t.Fatal(err)
	}
	got, err := s.AllowExpiries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[vendor].Equal(until) {
		t.Errorf("expiries %v, want only %s until %s", got, vendor, until)
	}
	if err := s.SetAllowExpiry(ctx, vendor, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AllowExpiries(ctx); len(got) != 0 {
		t.Errorf("after clearing: %v", got)
	}
	if err := s.SetAllowExpiry(ctx, netip.MustParsePrefix("198.18.3.3/32"), until); !errors.Is(err, ErrNotFound) {
		t.Errorf("expiry of a missing entry: %v, want ErrNotFound", err)
	}
}
