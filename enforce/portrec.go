package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Port-scoped decisions bypass the desired set, its expiry heap and the
// address backends: they go to the backends that implement PortBackend
// (nftables), one kernel element per prefix, protocol and port. They are a
// service's bans, few next to the address bans, so the reconciler keeps
// them in a plain map and lets the kernel timeouts expire them; a plain ban
// pays one length check for their existence.

// portKey is one kernel element of a port-scoped ban.
type portKey struct {
	p     netip.Prefix
	proto uint8
	port  uint16
}

// splitPorts returns the plain and the port-scoped decisions of ds. Without
// port-scoped ones, plain is ds itself.
func splitPorts(ds []model.Decision) (plain, scoped []model.Decision) {
	first := -1
	for i := range ds {
		if ds[i].PortScoped() {
			first = i
			break
		}
	}
	if first < 0 {
		return ds, nil
	}
	plain = append(plain, ds[:first]...)
	for _, d := range ds[first:] {
		if d.PortScoped() {
			scoped = append(scoped, d)
		} else {
			plain = append(plain, d)
		}
	}
	return plain, scoped
}

// portKeys lists the kernel elements of d.
func (r *Reconciler) portKeys(d model.Decision) ([]portKey, error) {
	p, err := r.prefixOf(d)
	if err != nil {
		return nil, err
	}
	var ks []portKey
	for _, proto := range d.Protocols() {
		for _, port := range d.Ports {
			ks = append(ks, portKey{p, proto, port})
		}
	}
	return ks, nil
}

// portBackends are the backends that hold port-scoped bans.
func (r *Reconciler) portBackends() []PortBackend {
	var out []PortBackend
	for _, b := range r.backends {
		if pb, ok := b.(PortBackend); ok {
			out = append(out, pb)
		}
	}
	return out
}

// service is the protocol and port of port-scoped elements.
type service struct {
	proto uint8
	port  uint16
}

func (k portKey) service() service { return service{k.proto, k.port} }

// held is what the kernel holds of some services: the elements and their
// expiries.
type held map[portKey]stamp

// heldOf computes what the kernel must hold of the services in svcs (all
// when nil). The kernel's interval sets refuse an element that overlaps
// another of the same service, so a prefix inside a wider one of the same
// service is held by the wider one alone; if the wider one ends first, the
// narrower one comes back with the next change or verify pass.
func (r *Reconciler) heldOf(svcs map[service]bool) held {
	groups := map[service][]portKey{}
	for k := range r.ports {
		if svcs == nil || svcs[k.service()] {
			groups[k.service()] = append(groups[k.service()], k)
		}
	}
	out := held{}
	for _, ks := range groups {
		for _, k := range ks {
			if !coveredByWider(k, ks) {
				out[k] = portExpiry(r.ports[k])
			}
		}
	}
	return out
}

func coveredByWider(k portKey, ks []portKey) bool {
	for _, o := range ks {
		if o.p.Bits() < k.p.Bits() && o.p.Addr().Is4() == k.p.Addr().Is4() && o.p.Contains(k.p.Addr()) {
			return true
		}
	}
	return false
}

// notePorts records add and remove in r.ports and returns the kernel change.
// Refused and invalid decisions are reported in the error; the others are
// recorded regardless.
func (r *Reconciler) notePorts(add, remove []model.Decision, now time.Time) (PortDiff, error) {
	if r.ports == nil {
		r.ports = map[portKey]map[int64]stamp{}
	}
	var errs []error
	type change struct {
		k     portKey
		id    int64
		until stamp
		add   bool
	}
	var changes []change
	svcs := map[service]bool{}
	for _, d := range remove {
		ks, err := r.portKeys(d)
		if err != nil {
			continue
		}
		for _, k := range ks {
			changes = append(changes, change{k: k, id: d.ID})
			svcs[k.service()] = true
		}
	}
	for _, d := range add {
		if d.Type != "" && d.Type != "ban" || d.Simulated || d.Expired(now) {
			continue
		}
		ks, err := r.portKeys(d)
		if err == nil && r.cfg.Guard != nil {
			if err = r.cfg.Guard.Check(ks[0].p); err != nil {
				r.stats.refused.Add(1)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("decision %d: %w", d.ID, err))
			continue
		}
		for _, k := range ks {
			changes = append(changes, change{k: k, id: d.ID, until: stampOf(d.Until), add: true})
			svcs[k.service()] = true
		}
	}
	if len(changes) == 0 {
		return PortDiff{}, errors.Join(errs...)
	}
	before := r.heldOf(svcs)
	for _, c := range changes {
		m := r.ports[c.k]
		switch {
		case c.add && m == nil:
			r.ports[c.k] = map[int64]stamp{c.id: c.until}
		case c.add:
			m[c.id] = c.until
		case m != nil:
			delete(m, c.id)
			if len(m) == 0 {
				delete(r.ports, c.k)
			}
		}
	}
	return diffHeld(before, r.heldOf(svcs)), errors.Join(errs...)
}

// diffHeld is the change from what the kernel held to what it must hold,
// each element once.
func diffHeld(before, after held) PortDiff {
	var diff PortDiff
	for k := range before {
		if _, ok := after[k]; !ok {
			diff.Delete = append(diff.Delete, PortEntry{Prefix: k.p, Proto: k.proto, Port: k.port})
		}
	}
	for k, exp := range after {
		if was, ok := before[k]; !ok || was != exp {
			diff.Set = append(diff.Set, PortEntry{Prefix: k.p, Proto: k.proto, Port: k.port, Expiry: exp.time()})
		}
	}
	return diff
}

// portExpiry is the latest expiry of the decisions covering one element.
func portExpiry(m map[int64]stamp) stamp {
	var latest stamp
	for _, u := range m {
		if u == 0 {
			return 0
		}
		latest = max(latest, u)
	}
	return latest
}

// prunePorts forgets elements whose every decision has expired: the kernel
// has let them go on its own.
func (r *Reconciler) prunePorts(now time.Time) {
	cut := stampOf(now)
	for k, m := range r.ports {
		if e := portExpiry(m); e != 0 && e <= cut {
			delete(r.ports, k)
		}
	}
}

// applyPorts runs on the Run goroutine: it records the decisions and writes
// the change to every port backend.
func (r *Reconciler) applyPorts(ctx context.Context, add, remove []model.Decision) error {
	now := time.Now()
	r.prunePorts(now)
	diff, err := r.notePorts(add, remove, now)
	if len(diff.Set) == 0 && len(diff.Delete) == 0 {
		return err
	}
	var errs []error
	for _, b := range r.portBackends() {
		if e := b.ApplyPorts(ctx, diff); e != nil {
			r.stats.applyErrors.Add(1)
			r.failed = true
			errs = append(errs, fmt.Errorf("%s: port-scoped bans: %w", b.(Backend).Name(), e))
		}
	}
	return errors.Join(append(errs, err)...)
}

// portLister is a port backend that can read back what it holds.
type portLister interface {
	ListPorts(ctx context.Context) ([]PortEntry, error)
}

// verifyPorts puts back the port-scoped elements a backend lost (a flushed
// set, a reboot). Elements no decision covers are left to their kernel
// timeout: a deleted decision leaves the kernel when it is deleted.
func (r *Reconciler) verifyPorts(ctx context.Context) error {
	r.prunePorts(time.Now())
	if len(r.ports) == 0 {
		return nil
	}
	var errs []error
	for _, b := range r.portBackends() {
		var diff PortDiff
		have := map[portKey]bool{}
		if l, ok := b.(portLister); ok {
			es, err := l.ListPorts(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, e := range es {
				have[portKey{e.Prefix, e.Proto, e.Port}] = true
			}
		}
		for k, exp := range r.heldOf(nil) {
			if !have[k] {
				diff.Set = append(diff.Set, PortEntry{Prefix: k.p, Proto: k.proto, Port: k.port, Expiry: exp.time()})
			}
		}
		if len(diff.Set) == 0 {
			continue
		}
		if err := b.ApplyPorts(ctx, diff); err != nil {
			errs = append(errs, fmt.Errorf("%s: port-scoped bans: %w", b.(Backend).Name(), err))
		}
	}
	return errors.Join(errs...)
}

// enqueuePorts hands port-scoped decisions to the Run goroutine without
// waiting for the kernel, like Enqueue.
func (r *Reconciler) enqueuePorts(ctx context.Context, add []model.Decision) {
	req := &request{done: make(chan result, 1)}
	req.fn = func() error { return r.applyPorts(ctx, add, nil) }
	select {
	case r.reqs <- req:
	case <-ctx.Done():
	}
}
