package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Applier holds the fleet decisions on this host: the daemon's decision
// service (ServiceApplier), or a fake in tests.
type Applier interface {
	// Add holds ds (origin fleet, Reason from ReasonOf) and returns the
	// ID each got here, 0 for one refused (an allowlisted or protected
	// address here): such a decision is not retried.
	Add(ctx context.Context, ds []model.Decision) ([]int64, error)
	// Delete drops the decisions of these local IDs.
	Delete(ctx context.Context, ids []int64) error
	// Held returns the fleet decisions held now, by server ID: the local
	// ID of each, so a restart knows which decisions it holds already.
	Held(ctx context.Context) (map[int64]int64, error)
}

// reasonPrefix starts the Reason of a fleet decision; the server's ID
// follows. The reason is what ties a local decision to the server's, so
// a restart rebuilds the tie from the store.
const reasonPrefix = "fleet decision #"

// ReasonOf is the Reason a fleet decision with the server's ID id gets.
func ReasonOf(id int64) string { return reasonPrefix + strconv.FormatInt(id, 10) }

// ServerID reads the server's ID from a fleet decision's Reason.
func ServerID(reason string) (int64, bool) {
	s, ok := strings.CutPrefix(reason, reasonPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

// ServiceApplier holds fleet decisions through the decision service: in
// the store (so they survive a restart and are served to this host's
// bouncers) and then in the kernel.
type ServiceApplier struct {
	Svc *decision.Service

	// local caches the active local bans listed for a page, for a second:
	// a startup's pages then list them once, not once a page. A ban newer
	// than the listing is in the client's memory of what it pushed.
	mu       sync.Mutex
	local    map[ownKey]bool
	listedAt time.Time
}

// Add adds ds in one commit; when some are refused here, one at a time so
// the others still go in. A decision this host took itself (the server
// streams back the bans of this host's own pushed alerts) is not added
// again: a second row would count twice toward escalation here.
func (a *ServiceApplier) Add(ctx context.Context, ds []model.Decision) ([]int64, error) {
	ids := make([]int64, len(ds))
	var add []model.Decision
	var at []int
	own, err := a.ownBans(ctx, ds)
	if err != nil {
		return nil, err
	}
	for i, d := range ds {
		if !own(d) {
			add, at = append(add, d), append(at, i)
		}
	}
	if len(add) == 0 {
		return ids, nil
	}
	err = a.Svc.Add(ctx, add)
	if err == nil {
		for j, i := range at {
			ids[i] = add[j].ID
		}
		return ids, nil
	}
	if !refused(err) {
		return nil, err
	}
	for j, i := range at {
		one := add[j : j+1 : j+1]
		if err := a.Svc.Add(ctx, one); err != nil {
			if refused(err) {
				continue
			}
			return nil, err
		}
		ids[i] = one[0].ID
	}
	return ids, nil
}

// ownBans returns a test of whether this host holds an active local ban
// of a decision's value from its scenario: the decision is that ban, come
// back from the server. A few decisions are looked up one by one; a page
// (a startup) against the local bans listed once, not a query each.
func (a *ServiceApplier) ownBans(ctx context.Context, ds []model.Decision) (func(model.Decision) bool, error) {
	list := func(f store.Filter, into map[ownKey]bool) error {
		f.Origin = string(model.OriginLocal)
		recs, err := a.Svc.List(ctx, f)
		if err != nil {
			return fmt.Errorf("local bans: %w", err)
		}
		for _, r := range recs {
			into[ownKey{r.ValueString(), r.Scenario}] = true
		}
		return nil
	}
	local := map[ownKey]bool{}
	if len(ds) > 16 {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.local == nil || time.Since(a.listedAt) > time.Second {
			a.local = map[ownKey]bool{}
			if err := list(store.Filter{}, a.local); err != nil {
				a.local = nil
				return nil, err
			}
			a.listedAt = time.Now()
		}
		local = a.local
	} else {
		for _, d := range ds {
			if d.Scenario == "" {
				continue
			}
			if err := list(store.Filter{Value: d.ValueString()}, local); err != nil {
				return nil, err
			}
		}
	}
	return func(d model.Decision) bool {
		return d.Scenario != "" && local[ownKey{d.ValueString(), d.Scenario}]
	}, nil
}

func refused(err error) bool {
	return errors.Is(err, decision.ErrAllowlisted) || errors.Is(err, decision.ErrProtected) || errors.Is(err, decision.ErrInvalid)
}

// Delete deletes each ID.
func (a *ServiceApplier) Delete(ctx context.Context, ids []int64) error {
	var errs []error
	for _, id := range ids {
		if _, err := a.Svc.Delete(ctx, store.Filter{ID: id}); err != nil {
			errs = append(errs, fmt.Errorf("decision %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Held lists the active fleet decisions.
func (a *ServiceApplier) Held(ctx context.Context) (map[int64]int64, error) {
	recs, err := a.Svc.List(ctx, store.Filter{Origin: string(model.OriginFleet)})
	if err != nil {
		return nil, fmt.Errorf("fleet decisions held: %w", err)
	}
	out := make(map[int64]int64, len(recs))
	for _, r := range recs {
		if sid, ok := ServerID(r.Reason); ok {
			out[sid] = r.ID
		}
	}
	return out, nil
}
