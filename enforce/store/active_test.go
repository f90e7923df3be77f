package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// TestHasActive: the index and the SQL it stands in for agree on which
// sources hold an active decision from an alert of a scenario, before and
// after deletes and expiry, and across a reopen.
func TestHasActive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	alertOn := func(value, scenario string, d time.Duration) {
		t.Helper()
		p, err := model.ParseValue(value)
		if err != nil {
			t.Fatal(err)
		}
		a := model.Alert{Scenario: scenario, Scope: model.ScopeIP, Value: value}
		ds := []model.Decision{{Value: p, Type: "ban", Origin: model.OriginLocal, Scenario: scenario, Until: time.Now().Add(d)}}
		if _, err := s.InsertAlert(ctx, a, ds); err != nil {
			t.Fatal(err)
		}
	}
	alertOn("198.18.0.1", "ssh-bf", time.Hour)
	alertOn("198.18.0.2", "ssh-bf", time.Hour)
	alertOn("198.18.0.3", "ssh-bf", 50*time.Millisecond)
	// A blocklist entry is no alert's decision.
	if err := s.InsertDecisions(ctx, []model.Decision{{Value: netip.MustParsePrefix("198.18.0.4/32"), Origin: model.OriginList, Scenario: "ssh-bf", Until: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteDecisions(ctx, Filter{Value: "198.18.0.2"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cases := []struct {
		value, scenario string
		want            bool
	}{
		{"198.18.0.1", "ssh-bf", true},
		{"198.18.0.1", "http-probing", false},
		{"198.18.0.2", "ssh-bf", false}, // deleted
		{"198.18.0.3", "ssh-bf", false}, // expired
		{"198.18.0.4", "ssh-bf", false}, // not from an alert
		{"198.18.0.9", "ssh-bf", false},
	}
	check := func(step string) {
		t.Helper()
		if err := s.WaitIndexed(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			got, err := s.HasActive(ctx, c.value, c.scenario, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			s.indexOK.Store(false) // ask SQLite
			fromSQL, err := s.HasActive(ctx, c.value, c.scenario, time.Now())
			s.indexOK.Store(true)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || fromSQL != c.want {
				t.Errorf("%s: HasActive(%s, %s) = %v from memory, %v from SQLite, want %v", step, c.value, c.scenario, got, fromSQL, c.want)
			}
		}
	}
	check("live")
	s.Close()
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	check("reopened")
}

// TestActivePages: the paged read returns every active decision once, in
// ID order, and none that ended.
func TestActivePages(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	Fill(t, s, 1000)
	if _, err := s.DeleteDecisions(ctx, Filter{Value: "198.18.0.7"}); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 7, 999, 1000, 0} {
		var n int
		var last int64
		err := s.ActivePages(ctx, time.Now(), size, func(ds []model.Decision) error {
			if size > 0 && len(ds) > size {
				t.Fatalf("page of %d, want at most %d", len(ds), size)
			}
			for _, d := range ds {
				if d.ID <= last {
					t.Fatalf("ID %d after %d", d.ID, last)
				}
				if d.Value.Addr().String() == "198.18.0.7" {
					t.Fatal("a deleted decision was read as active")
				}
				last = d.ID
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 999 {
			t.Fatalf("size %d: %d active decisions read, want 999", size, n)
		}
	}
}
