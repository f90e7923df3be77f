package api

import (
	"context"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// Store is what the server reads and writes in the store directly, beside
// what it asks of the decision service: bouncer keys, the bouncer stream,
// listings and alerts. *store.Store provides it; tests can pass a fake.
type Store interface {
	AddBouncer(ctx context.Context, name string) (string, error)
	DeleteBouncer(ctx context.Context, name string) error
	ListBouncers(ctx context.Context) ([]store.Bouncer, error)
	AuthBouncer(ctx context.Context, key string) (store.Bouncer, error)
	BouncerPulled(ctx context.Context, name string, seq int64, at time.Time, ip, userAgent string) error

	Stream(ctx context.Context, after int64, startup bool, now time.Time, size int, emit func(store.Change, []store.Record) error) (int64, error)
	ListPages(ctx context.Context, f store.Filter, size int, fn func([]store.Record) error) error
	CountMatching(ctx context.Context, f store.Filter) (int, error)

	ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.AlertRecord, error)
	GetAlert(ctx context.Context, id int64) (store.AlertRecord, error)

	Counts(ctx context.Context) (store.Counts, error)
}

var _ Store = (*store.Store)(nil)
