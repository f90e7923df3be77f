package decision

import (
	"context"
	"net/netip"
	"time"

	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Store is what the service needs of the store it keeps decisions, alerts
// and the allowlist in: *store.Store, or a fake in tests. It is declared
// here so another store implementation only has to provide these.
type Store interface {
	// CountDecisions answers the profiles' escalation questions.
	profile.Counter

	// ReserveIDs hands out n decision IDs before the insert, so the kernel
	// can be told of a decision before it is stored.
	ReserveIDs(n int) int64
	InsertAlert(ctx context.Context, a model.Alert, ds []model.Decision) (int64, error)
	InsertDecisions(ctx context.Context, ds []model.Decision) error
	HasActive(ctx context.Context, value, scenario string, now time.Time) (bool, error)

	Active(ctx context.Context, now time.Time) ([]model.Decision, error)
	ActiveByOrigin(ctx context.Context, now time.Time) (map[model.Origin]int, error)
	ListDecisions(ctx context.Context, f store.Filter) ([]store.Record, error)

	DeleteDecisions(ctx context.Context, f store.Filter) ([]model.Decision, error)
	DeleteIDs(ctx context.Context, ids []int64) ([]model.Decision, error)
	DeleteAll(ctx context.Context) ([]model.Decision, error)
	Expire(ctx context.Context, now time.Time) (int, error)
	Prune(ctx context.Context, cutoff time.Time) (store.PruneStats, error)
	CapAlerts(ctx context.Context, max int) (int64, error)

	ListAllow(ctx context.Context) ([]store.AllowEntry, error)
	AddAllow(ctx context.Context, e store.AllowEntry) error
	DeleteAllow(ctx context.Context, value netip.Prefix) error
}

var _ Store = (*store.Store)(nil)
