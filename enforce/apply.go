package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// apply writes a diff to every backend. A failing backend does not stop the
// others; it is repaired by a verify pass soon after.
func (r *Reconciler) apply(ctx context.Context, diff Diff, expiryOnly bool) error {
	r.stats.entries.Store(int64(r.desired.len()))
	if diff.Empty() {
		return nil
	}
	start := time.Now()
	// Backends are independent kernel objects: writing them side by side
	// costs the slower one, not the sum. Each still sees one caller.
	errs := make([]error, len(r.backends))
	var wg sync.WaitGroup
	for i, b := range r.backends {
		if s, ok := b.(selfExpiring); expiryOnly && ok && s.ExpiresEntries() {
			continue
		}
		wg.Go(func() {
			if err := b.Apply(ctx, diff); err != nil {
				errs[i] = fmt.Errorf("%s: %w", b.Name(), err)
			}
		})
	}
	wg.Wait()
	return r.applied(start, errors.Join(errs...))
}

// applied counts a write to the backends that began at start.
func (r *Reconciler) applied(start time.Time, err error) error {
	if err != nil {
		r.stats.applyErrors.Add(1)
		r.failed = true
	}
	r.stats.batches.Add(1)
	r.stats.lastApplyNanos.Store(int64(time.Since(start)))
	return err
}

// prefixOf is the kernel prefix a decision bans.
func (r *Reconciler) prefixOf(d model.Decision) (netip.Prefix, error) {
	p := d.Value
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("decision %d: invalid value", d.ID)
	}
	p = model.Canonical(p)
	if p.Addr().Is6() && p.Bits() > r.cfg.IPv6Prefix {
		p = netip.PrefixFrom(p.Addr(), r.cfg.IPv6Prefix).Masked()
	}
	return p, nil
}

// addDecision records d as covering p. It reports whether d was recorded
// (bans only, not simulated nor expired) and whether p is new to the
// desired set.
func (r *Reconciler) addDecision(d model.Decision, p netip.Prefix, now time.Time) (added, fresh bool, err error) {
	if d.Type != "" && d.Type != "ban" || d.Simulated || d.Expired(now) {
		return false, false, nil
	}
	if r.cfg.Guard != nil {
		if err := r.cfg.Guard.Check(p); err != nil {
			r.stats.refused.Add(1)
			return false, false, fmt.Errorf("decision %d: %w", d.ID, err)
		}
	}
	k, until := keyOf(p), stampOf(d.Until)
	c, ok := r.desired.get(k)
	switch {
	case ok && r.dropAdopted(k, &c):
		// A decision takes over an adopted entry: its expiry rules, and
		// deleting it deletes the entry.
		c = cover{id: d.ID, until: until}
	case ok:
		r.coverSet(k, &c, d.ID, until)
	default:
		c = cover{id: d.ID, until: until}
		r.stats.byClass[classOf(p)].Add(1)
	}
	r.desired.put(k, c)
	if until != 0 {
		r.expiries.push(expiryItem{until: until, key: k})
	}
	return true, !ok, nil
}

func (r *Reconciler) removeDecision(p netip.Prefix, id int64) {
	k := keyOf(p)
	c, ok := r.desired.get(k)
	if !ok {
		return
	}
	if r.coverRemove(k, &c, id) && (id == adoptedID || !r.dropAdopted(k, &c)) {
		r.desired.put(k, c)
		return
	}
	r.desired.del(k)
	r.stats.byClass[classOf(p)].Add(-1)
}
