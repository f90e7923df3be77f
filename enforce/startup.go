package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// How a restarted daemon takes over the kernel.
//
// The kernel already holds the bans of the previous run: nftables and
// pinned XDP maps outlive the daemon. So a start flushes nothing, lets new
// decisions through at once, and reads the store into the desired set in
// the background (a million decisions take seconds to read), writing each
// page to the kernel too, which restores what the kernel lost (a reboot).
// Until that load is done the desired set is incomplete, so nothing is
// removed from the kernel for being absent from it.
//
// A kernel entry without a stored decision is adopted, never deleted: the
// previous run enforced a ban and was killed before its store write
// committed (decisions deleted on purpose leave the store and the kernel
// together, and expired ones leave the kernel by their timeout). The first
// verify pass after the start keeps such entries in the desired set until
// their kernel expiry, under adoptedID; a stored decision for the same
// prefix (the alert raised again from the log lines the previous run had
// not acknowledged) takes over from it, and deleting that decision deletes
// the entry.

// adoptedID is the desired set's decision ID for adopted kernel entries;
// stored decisions have positive IDs.
const adoptedID = -1

// Loader reads the stored decisions for the reconciler's start, calling
// load with one page at a time. It returns when every page was handed over
// or ctx ended.
type Loader func(ctx context.Context, load func([]model.Decision) error) error

// maxLoadErrs bounds the errors a load keeps for LoadResult.
const maxLoadErrs = 8

// startLoad runs cfg.Load beside Run and ends the start once it returns.
// Each page goes through Apply, so it waits its turn with new decisions,
// and a ban raised meanwhile waits for one page's kernel write at most.
func (r *Reconciler) startLoad(ctx context.Context) {
	r.loading, r.adopt = true, true
	var errs []error
	var n int
	err := r.cfg.Load(ctx, func(ds []model.Decision) error {
		n += len(ds)
		err := r.Apply(ctx, ds, nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Refused decisions and a failing backend do not stop the load:
		// the rest is enforced, and the backend is repaired by a verify.
		if err != nil && len(errs) < maxLoadErrs {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("load stored decisions: %w", err))
	}
	loadErr := errors.Join(errs...)
	r.Do(ctx, func() error {
		r.loading = false
		r.loadN, r.loadErr = n, loadErr
		close(r.ready)
		return nil
	})
}

// LoadResult is how many stored decisions the start loaded and what went
// wrong; valid once Ready is closed.
func (r *Reconciler) LoadResult() (int, error) {
	select {
	case <-r.ready:
		return r.loadN, r.loadErr
	default:
		return 0, nil
	}
}

// Adopted counts kernel entries adopted without a stored decision.
func (r *Reconciler) Adopted() uint64 { return r.adopted.Load() }

// adoptEntry keeps e, held by a backend while no decision covers it, until
// its kernel expiry. It reports false for an entry whose expiry passed (an
// XDP map keeps those until removed).
func (r *Reconciler) adoptEntry(e Entry, now time.Time) bool {
	if !e.Expiry.IsZero() && !e.Expiry.After(now) {
		return false
	}
	k, until := keyOf(e.Prefix), stampOf(e.Expiry)
	r.desired.put(k, cover{id: adoptedID, until: until})
	r.stats.byClass[classOf(e.Prefix)].Add(1)
	r.stats.entries.Store(int64(r.desired.len()))
	if until != 0 {
		r.expiries.push(expiryItem{until: until, key: k})
	}
	r.adopted.Add(1)
	return true
}

// dropAdopted removes the adopted entry from c, if it holds one, and
// reports whether no decision is left.
func (r *Reconciler) dropAdopted(k pkey, c *cover) (empty bool) {
	if _, ok := r.coverGet(k, *c, adoptedID); !ok {
		return false
	}
	return !r.coverRemove(k, c, adoptedID)
}

// AdoptedFilter selects adopted entries: those matching every field set.
// The zero filter selects none.
type AdoptedFilter struct {
	// IP selects entries containing the address, Range those containing
	// the whole range, Exact the entry the kernel holds for that value
	// (an IPv6 address widened as decisions on it are).
	IP           netip.Addr
	Range, Exact netip.Prefix
	// Scope, when set, selects single addresses ("Ip") or ranges
	// ("Range"), compared case-insensitively as the store does.
	Scope string
	// All selects every adopted entry.
	All bool
}

func (f AdoptedFilter) empty() bool {
	return !f.All && !f.IP.IsValid() && !f.Range.IsValid() && !f.Exact.IsValid()
}

// DeleteAdopted removes from the desired set and the kernel the adopted
// entries f selects and returns them. They have no stored decision, so a
// delete in the store cannot reach them, yet they ban like one.
func (r *Reconciler) DeleteAdopted(ctx context.Context, f AdoptedFilter) ([]Entry, error) {
	if f.empty() {
		return nil, nil
	}
	var out []Entry
	err := r.Do(ctx, func() error {
		out = r.selectAdopted(f)
		if len(out) == 0 {
			return nil
		}
		diff := Diff{Delete: make([]netip.Prefix, 0, len(out))}
		for _, e := range out {
			r.removeDecision(e.Prefix, adoptedID)
			diff.Delete = append(diff.Delete, e.Prefix)
		}
		return r.apply(ctx, diff, false)
	})
	if err != nil {
		return out, fmt.Errorf("delete adopted bans: %w", err)
	}
	return out, nil
}

// selectAdopted returns the adopted entries f selects. It looks up the few
// prefixes that can match rather than walking a desired set of a million.
func (r *Reconciler) selectAdopted(f AdoptedFilter) []Entry {
	var exact netip.Prefix
	if f.Exact.IsValid() {
		var err error
		if exact, err = r.prefixOf(model.Decision{Value: f.Exact}); err != nil {
			return nil
		}
	}
	ip := f.IP.Unmap()
	rng := f.Range
	if rng.IsValid() {
		rng, _ = r.prefixOf(model.Decision{Value: rng})
	}
	match := func(p netip.Prefix) bool {
		single := p.Bits() == p.Addr().BitLen()
		return (f.Scope == "" || strings.EqualFold(f.Scope, "Ip") && single || strings.EqualFold(f.Scope, "Range") && !single) &&
			(!exact.IsValid() || p == exact) &&
			(!ip.IsValid() || p.Contains(ip)) &&
			(!rng.IsValid() || p.Bits() <= rng.Bits() && p.Contains(rng.Addr()))
	}
	var out []Entry
	add := func(k pkey) {
		c, ok := r.desired.get(k)
		if !ok || c.id != adoptedID || r.shared(k) {
			return
		}
		if p := k.prefix(); match(p) {
			out = append(out, Entry{Prefix: p, Expiry: c.until.time()})
		}
	}
	// Every prefix containing a value: one per length up to its own.
	covering := func(a netip.Addr, bits int) {
		for b := 0; b <= bits; b++ {
			p, _ := a.Prefix(b)
			add(keyOf(p))
		}
	}
	switch {
	case exact.IsValid():
		add(keyOf(exact))
	case rng.IsValid():
		covering(rng.Addr(), rng.Bits())
	case ip.IsValid():
		covering(ip, ip.BitLen())
	default: // All
		for k := range r.desired.all() {
			add(k)
		}
	}
	return out
}
