package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Drift is what a verify pass found different in one backend.
type Drift struct {
	Backends []BackendDrift
}

// BackendDrift lists the differences found in one backend.
type BackendDrift struct {
	Backend string
	// Missing were desired but absent; Extra were present but not desired;
	// Expiry were present with another expiry.
	Missing, Extra, Expiry []netip.Prefix
	Err                    error
}

// Total counts the differences.
func (d Drift) Total() int {
	n := 0
	for _, b := range d.Backends {
		n += len(b.Missing) + len(b.Extra) + len(b.Expiry)
	}
	return n
}

// ensurer is implemented by backends that can recreate their kernel objects
// (table, sets, chains) after someone removed them.
type ensurer interface {
	Ensure(ctx context.Context) error
}

// expiryTolerance absorbs the rounding of kernel timeouts (nft keeps
// milliseconds, the clocks differ by microseconds).
const expiryTolerance = 2 * time.Second

// periodicVerify always re-creates missing kernel objects, but lists
// elements only as often as keeps listing under a tenth of the interval: a
// dump of a million-element nft set takes tens of seconds of kernel time.
func (r *Reconciler) periodicVerify(ctx context.Context) {
	if r.skipLists > 0 {
		r.skipLists--
		for _, b := range r.backends {
			if e, ok := b.(ensurer); ok {
				if err := e.Ensure(ctx); err != nil {
					r.stats.applyErrors.Add(1)
					r.failed = true
				}
			}
		}
		return
	}
	start := time.Now()
	r.verify(ctx)
	if budget := r.cfg.VerifyInterval / 10; budget > 0 {
		r.skipLists = int(time.Since(start) / budget)
	}
}

func (r *Reconciler) verify(ctx context.Context) (Drift, error) {
	var drift Drift
	var errs []error
	now := time.Now()
	// The verify Run makes before Ready, without a Load, converges the
	// kernel at start: not a repair. Passes during a Load are.
	started := r.loading
	select {
	case <-r.ready:
		started = true
	default:
	}
	for i, b := range r.backends {
		bd := BackendDrift{Backend: b.Name()}
		bd.Err = r.verifyBackend(ctx, b, now, &bd)
		if bd.Err != nil {
			r.stats.applyErrors.Add(1)
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), bd.Err))
		}
		r.stats.drift.Add(uint64(len(bd.Missing) + len(bd.Extra) + len(bd.Expiry)))
		// A failed repair is counted by the pass that succeeds: the drift
		// is found again.
		if started && bd.Err == nil {
			rs := &r.stats.repairs[i]
			rs[RepairMissing].Add(uint64(len(bd.Missing)))
			rs[RepairExtra].Add(uint64(len(bd.Extra)))
			rs[RepairExpiry].Add(uint64(len(bd.Expiry)))
		}
		drift.Backends = append(drift.Backends, bd)
	}
	if err := r.verifyPorts(ctx); err != nil {
		r.stats.applyErrors.Add(1)
		errs = append(errs, err)
	}
	if started && r.cfg.Verified != nil {
		r.cfg.Verified(drift)
	}
	if len(errs) == 0 && !r.loading {
		r.adopt = false
	}
	return drift, errors.Join(errs...)
}

func (r *Reconciler) verifyBackend(ctx context.Context, b Backend, now time.Time, bd *BackendDrift) error {
	if e, ok := b.(ensurer); ok {
		if err := e.Ensure(ctx); err != nil {
			return fmt.Errorf("ensure: %w", err)
		}
	}
	held, err := b.List(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	var diff Diff
	seen := make(map[pkey]bool, len(held))
	for _, e := range held {
		k := keyOf(e.Prefix)
		seen[k] = true
		c, ok := r.desired.get(k)
		if !ok && r.adopt && r.adoptEntry(e, now) {
			continue // see startup.go
		}
		if !ok {
			bd.Extra = append(bd.Extra, e.Prefix)
			diff.Delete = append(diff.Delete, e.Prefix)
			continue
		}
		want := r.expiryOf(k, c).time()
		if !sameExpiry(want, e.Expiry) {
			bd.Expiry = append(bd.Expiry, e.Prefix)
			diff.Set = append(diff.Set, Entry{Prefix: e.Prefix, Expiry: want})
		}
	}
	cut := stampOf(now)
	for k, c := range r.desired.all() {
		if seen[k] {
			continue
		}
		exp := r.expiryOf(k, c)
		if exp != 0 && exp <= cut {
			continue
		}
		bd.Missing = append(bd.Missing, k.prefix())
		diff.Set = append(diff.Set, Entry{Prefix: k.prefix(), Expiry: exp.time()})
	}
	if diff.Empty() {
		return nil
	}
	return b.Apply(ctx, diff)
}

func sameExpiry(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	d := a.Sub(b)
	return d < expiryTolerance && d > -expiryTolerance
}
