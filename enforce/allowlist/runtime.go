package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Decisions is the part of the decision service the allowlist works
// through: it stores runtime entries and lifts bans.
type Decisions interface {
	AddAllow(ctx context.Context, value netip.Prefix, reason string, wide bool) ([]model.Decision, error)
	DeleteAllow(ctx context.Context, value netip.Prefix) error
	ListAllow() []decision.AllowEntry
	ActiveDecisions(ctx context.Context) ([]model.Decision, error)
	Delete(ctx context.Context, f store.Filter) ([]model.Decision, error)
}

// ExpiryStore keeps the expiries of runtime entries.
type ExpiryStore interface {
	SetAllowExpiry(ctx context.Context, value netip.Prefix, t time.Time) error
	AllowExpiries(ctx context.Context) (map[netip.Prefix]time.Time, error)
}

// ErrNoExpiry is returned for an expiring entry when the store cannot keep
// the expiry.
var ErrNoExpiry = errors.New("this store keeps no allowlist expiry")

// Runtime is the entries added at run time (moat allowlist add): the
// decision service keeps them, the store their expiries.
type Runtime struct {
	svc Decisions
	st  ExpiryStore

	mu  sync.Mutex
	exp map[netip.Prefix]time.Time
}

// NewRuntime loads the stored expiries; st may be nil (no expiry kept).
func NewRuntime(ctx context.Context, svc Decisions, st ExpiryStore) (*Runtime, error) {
	r := &Runtime{svc: svc, st: st, exp: map[netip.Prefix]time.Time{}}
	if st != nil {
		exp, err := st.AllowExpiries(ctx)
		if err != nil {
			return nil, err
		}
		r.exp = exp
	}
	return r, nil
}

// Entries lists the runtime entries (Config.Runtime).
func (r *Runtime) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Entry
	for _, e := range r.svc.ListAllow() {
		if e.Config {
			continue
		}
		out = append(out, Entry{Value: model.ValueString(e.Value), Comment: e.Reason, Expires: r.exp[e.Value], Source: SourceRuntime})
	}
	return out
}

// Add stores an entry that expires at expires (zero: never) and lifts the
// bans it covers, which it returns.
func (r *Runtime) Add(ctx context.Context, value netip.Prefix, comment string, expires time.Time, wide bool) ([]model.Decision, error) {
	value = model.Canonical(value)
	if !expires.IsZero() {
		if r.st == nil {
			return nil, fmt.Errorf("allowlist: %w: %w", decision.ErrInvalid, ErrNoExpiry)
		}
		if !expires.After(time.Now()) {
			return nil, fmt.Errorf("allowlist: %w: already expired", decision.ErrInvalid)
		}
	}
	lifted, err := r.svc.AddAllow(ctx, value, comment, wide)
	if err != nil || expires.IsZero() {
		return lifted, err
	}
	if err := r.st.SetAllowExpiry(ctx, value, expires); err != nil {
		// Better no entry than one that never expires.
		return lifted, errors.Join(err, r.svc.DeleteAllow(ctx, value))
	}
	r.mu.Lock()
	r.exp[value] = expires
	r.mu.Unlock()
	return lifted, nil
}

// Expire removes an expired runtime entry (Config.Expired).
func (r *Runtime) Expire(ctx context.Context, e Entry) error {
	p, err := model.ParseValue(e.Value)
	if err != nil {
		return err
	}
	if err := r.svc.DeleteAllow(ctx, p); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("remove expired allowlist entry %s: %w", e.Value, err)
	}
	r.mu.Lock()
	delete(r.exp, p)
	r.mu.Unlock()
	return nil
}

// Lift deletes the active decisions that overlap the ranges, in the store
// and the kernel, and returns them: a ban on an address that has just
// become protected does not wait for its expiry.
func Lift(ctx context.Context, svc Decisions, ps []netip.Prefix) ([]model.Decision, error) {
	var out []model.Decision
	var errs []error
	var ranges []netip.Prefix
	for _, p := range ps {
		if p.Bits() != p.Addr().BitLen() {
			ranges = append(ranges, p)
			continue
		}
		// By address: this also finds the covering ranges and the kernel
		// bans adopted without a stored decision.
		ds, err := svc.Delete(ctx, store.Filter{IP: p.Addr()})
		out, errs = append(out, ds...), append(errs, err)
	}
	if len(ranges) > 0 {
		active, err := svc.ActiveDecisions(ctx)
		errs = append(errs, err)
		for _, d := range active {
			for _, p := range ranges {
				if d.ID != 0 && p.Overlaps(d.Value) {
					ds, err := svc.Delete(ctx, store.Filter{ID: d.ID})
					out, errs = append(out, ds...), append(errs, err)
					break
				}
			}
		}
	}
	return out, errors.Join(errs...)
}
