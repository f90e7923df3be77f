package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Country and AS decisions (model.Decision.Geo) reach the reconciler as
// one decision each and are expanded at its door (Seed, Apply, Enqueue)
// into one decision per network the GeoIP database assigns to their
// target, with the decision's ID: from there on they are range bans like
// any other, sharing prefixes, expiries and kernel entries with them. Each
// network goes through Guard.Carve, so a network holding a protected
// address is banned around it. The reconciler remembers which prefixes
// each one was expanded into, to remove exactly those.

// GeoNetworks answers which networks a GeoIP database assigns to a
// country or an autonomous system, sorted. detect/geoip's DB is one,
// handed over by cmd/moat.
type GeoNetworks interface {
	Networks(model.Geo) ([]netip.Prefix, error)
}

// ErrNoGeoIP is wrapped by the refusal of a Country or AS decision when no
// GeoIP database is configured.
var ErrNoGeoIP = errors.New("no GeoIP database configured")

// geoOwned is an enforced Country or AS decision and the prefixes it bans.
type geoOwned struct {
	d     model.Decision
	parts []netip.Prefix
}

// geoState is the Country and AS decisions the reconciler enforces, by ID.
type geoState struct {
	mu    sync.Mutex
	owned map[int64]geoOwned
}

func hasGeo(ds []model.Decision) bool {
	for i := range ds {
		if !ds[i].Geo.IsZero() {
			return true
		}
	}
	return false
}

// splitGeo returns the address and range decisions of ds, then the
// Country and AS ones.
func splitGeo(ds []model.Decision) (plain, geo []model.Decision) {
	for _, d := range ds {
		if d.Geo.IsZero() {
			plain = append(plain, d)
		} else {
			geo = append(geo, d)
		}
	}
	return plain, geo
}

// applyGeo is Apply for a call carrying Country or AS decisions: the
// others go through Apply, these are expanded and queued while the
// expansion lock is held, so that the reconciler sees their expansions in
// the order they were made (a remove never overtaken by an older add).
// With wait, it returns once the kernel holds the result.
func (r *Reconciler) applyGeo(ctx context.Context, add, remove []model.Decision, wait bool) error {
	plainAdd, geoAdd := splitGeo(add)
	plainRemove, geoRemove := splitGeo(remove)
	var errs []error
	if len(plainAdd)+len(plainRemove) > 0 {
		if wait {
			errs = append(errs, r.Apply(ctx, plainAdd, plainRemove))
		} else {
			r.Enqueue(ctx, plainAdd)
		}
	}
	r.geo.mu.Lock()
	req, err := r.expandGeo(geoAdd, geoRemove)
	return errors.Join(append(errs, err, r.sendGeo(ctx, req, wait))...)
}

// sendGeo queues an expansion's request and releases r.geo.mu once it is
// queued; with wait, it then waits for the kernel.
func (r *Reconciler) sendGeo(ctx context.Context, req *request, wait bool) error {
	if len(req.add)+len(req.remove) == 0 {
		r.geo.mu.Unlock()
		return nil
	}
	if wait {
		req.done = make(chan result, 1)
	}
	select {
	case r.reqs <- req:
		r.geo.mu.Unlock()
	case <-ctx.Done():
		r.geo.mu.Unlock()
		return ctx.Err()
	}
	if !wait {
		return nil
	}
	select {
	case res := <-req.done:
		return res.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expandGeo turns Country and AS decisions into a request holding one
// decision per prefix they ban (add) or banned (remove), r.geo.mu held.
// Removes are taken first, so a decision both removed and added is
// expanded again (Recarve). Decisions that ban nothing (simulated, other
// types, expired) are dropped. The error reports the decisions, or
// networks, that could not be expanded; the rest is in the request.
func (r *Reconciler) expandGeo(add, remove []model.Decision) (*request, error) {
	req := &request{}
	now := time.Now()
	if r.geo.owned == nil {
		r.geo.owned = map[int64]geoOwned{}
	}
	for id, o := range r.geo.owned {
		// Their prefixes left the desired set with their expiry.
		if o.d.Expired(now) {
			delete(r.geo.owned, id)
		}
	}
	for _, d := range remove {
		if o, ok := r.geo.owned[d.ID]; ok {
			delete(r.geo.owned, d.ID)
			req.remove = appendParts(req.remove, o.d, o.parts)
		}
	}
	var errs []error
	for _, d := range add {
		if d.Type != "" && d.Type != "ban" || d.Simulated || d.Expired(now) {
			continue
		}
		if o, ok := r.geo.owned[d.ID]; ok {
			// Added again without a remove: what it banned goes first.
			req.remove = appendParts(req.remove, o.d, o.parts)
			delete(r.geo.owned, d.ID)
		}
		parts, err := r.geoParts(d)
		if err != nil {
			r.stats.refused.Add(1)
			errs = append(errs, err)
		}
		if len(parts) > 0 {
			r.geo.owned[d.ID] = geoOwned{d: d, parts: parts}
			req.add = appendParts(req.add, d, parts)
		}
	}
	return req, errors.Join(errs...)
}

// appendParts appends one decision per prefix, each d with that value.
func appendParts(out []model.Decision, d model.Decision, parts []netip.Prefix) []model.Decision {
	d.Geo = model.Geo{}
	for _, p := range parts {
		d.Value = p
		out = append(out, d)
	}
	return out
}

// geoParts is what d bans: its target's networks, carved around what the
// guard protects.
func (r *Reconciler) geoParts(d model.Decision) ([]netip.Prefix, error) {
	what := fmt.Sprintf("decision %d (%s %s)", d.ID, d.Geo.Scope, d.Geo.Value)
	if r.cfg.Geo == nil {
		return nil, fmt.Errorf("%s: %w", what, ErrNoGeoIP)
	}
	nets, err := r.cfg.Geo.Networks(d.Geo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var parts []netip.Prefix
	var errs []error
	for _, n := range nets {
		n = model.Canonical(n)
		ps := []netip.Prefix{n}
		if r.cfg.Guard != nil {
			if ps, err = r.cfg.Guard.Carve(n); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				continue
			}
		}
		for _, p := range ps {
			// An IPv6 part longer than the ban prefix is next to a
			// protected address: widened, it would cover it.
			if p.Addr().Is6() && p.Bits() > r.cfg.IPv6Prefix {
				continue
			}
			parts = append(parts, p)
		}
	}
	return parts, errors.Join(errs...)
}

// GeoDecisions is how many Country and AS decisions are enforced, and the
// prefixes they ban.
func (r *Reconciler) GeoDecisions() (decisions, prefixes int) {
	r.geo.mu.Lock()
	defer r.geo.mu.Unlock()
	now := time.Now()
	for _, o := range r.geo.owned {
		if !o.d.Expired(now) {
			decisions++
			prefixes += len(o.parts)
		}
	}
	return decisions, prefixes
}

// GeoPrefixes returns the prefixes decision id bans, if it is an enforced
// Country or AS decision.
func (r *Reconciler) GeoPrefixes(id int64) ([]netip.Prefix, bool) {
	r.geo.mu.Lock()
	defer r.geo.mu.Unlock()
	o, ok := r.geo.owned[id]
	return slices.Clone(o.parts), ok
}

// Recarve expands the enforced Country and AS decisions again, after what
// the guard protects changed: a newly allowlisted address leaves their
// bans, one no longer allowlisted joins them. Only the difference reaches
// the kernel.
func (r *Reconciler) Recarve(ctx context.Context) error {
	r.geo.mu.Lock()
	ds := make([]model.Decision, 0, len(r.geo.owned))
	for _, o := range r.geo.owned {
		ds = append(ds, o.d)
	}
	req, err := r.expandGeo(ds, ds)
	return errors.Join(err, r.sendGeo(ctx, req, true))
}
