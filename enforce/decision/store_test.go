package decision

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// sqlStore is the SQLite store newService builds the service over, for
// tests that read back what the service wrote.
func sqlStore(s *Service) *store.Store { return s.Store().(*store.Store) }

// failingStore is a Store whose writes fail and whose allowlist holds one
// entry; the embedded nil interface panics on any other call, so the test
// also shows which methods the service reaches for.
type failingStore struct {
	Store
	allow []store.AllowEntry
	err   error
}

func (f *failingStore) ListAllow(context.Context) ([]store.AllowEntry, error) { return f.allow, nil }
func (f *failingStore) InsertDecisions(context.Context, []model.Decision) error {
	return f.err
}

// The service runs over any Store: here a fake whose allowlist and write
// failure reach the caller unchanged.
func TestServiceOverFakeStore(t *testing.T) {
	errFull := errors.New("disk full")
	fake := &failingStore{
		allow: []store.AllowEntry{{Value: netip.MustParsePrefix("198.18.40.0/24")}},
		err:   errFull,
	}
	svc, err := New(fake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	for _, c := range []struct {
		value string
		want  error
	}{
		{"198.18.40.7", ErrAllowlisted},
		{"198.18.41.1", errFull},
	} {
		ds := []model.Decision{{Value: netip.MustParsePrefix(c.value + "/32"), Type: "ban", Origin: model.OriginCLI, Until: until}}
		if err := svc.Add(context.Background(), ds); !errors.Is(err, c.want) {
			t.Errorf("Add(%s) over the fake store = %v, want %v", c.value, err, c.want)
		}
	}
}
