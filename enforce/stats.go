package enforce

import (
	"net/netip"
	"sync/atomic"
	"time"
)

type reconcilerStats struct {
	batches, applyErrors, refused, drift atomic.Uint64
	entries                              atomic.Int64
	byClass                              [numClasses]atomic.Int64
	lastApplyNanos                       atomic.Int64

	// repairs counts, per backend (in r.backends order), the entries a
	// verify pass found Missing, Extra or with a wrong Expiry and repaired.
	repairs [][numRepairKinds]atomic.Uint64
}

// Entry classes, as the backends store them: single addresses and ranges,
// per family.
const (
	Single4 = iota
	Single6
	Range4
	Range6
	numClasses
)

// ClassNames names the entry classes as moat's nftables sets do.
var ClassNames = [numClasses]string{"ban4", "ban6", "ban4_range", "ban6_range"}

func classOf(p netip.Prefix) int {
	c := Single4
	if p.Addr().Is6() {
		c = Single6
	}
	if p.Bits() != p.Addr().BitLen() {
		c += Range4
	}
	return c
}

// Repair kinds, indexing BackendRepairs.Count.
const (
	RepairMissing = iota
	RepairExtra
	RepairExpiry
	numRepairKinds
)

// RepairKinds names the repair kinds for logs and metrics.
var RepairKinds = [numRepairKinds]string{"missing", "extra", "expiry"}

// BackendRepairs counts the entries verify passes repaired in one backend
// since start, by kind. The pass that converges the kernel at start is not
// counted: after a reboot every ban is missing, and that is no drift.
type BackendRepairs struct {
	Backend string
	Count   [numRepairKinds]uint64
}

// ReconcilerStats is a snapshot of the reconciler's counters.
type ReconcilerStats struct {
	Batches, ApplyErrors, Refused, Drift uint64
	// Repairs has one row per backend.
	Repairs []BackendRepairs
	// Entries is the number of prefixes the kernel should hold; ByClass
	// splits it by ClassNames.
	Entries   int64
	ByClass   [numClasses]int64
	LastApply time.Duration
}

// Stats returns the counters; safe from any goroutine.
func (r *Reconciler) Stats() ReconcilerStats {
	st := ReconcilerStats{
		Batches:     r.stats.batches.Load(),
		ApplyErrors: r.stats.applyErrors.Load(),
		Refused:     r.stats.refused.Load(),
		Drift:       r.stats.drift.Load(),
		Entries:     r.stats.entries.Load(),
		LastApply:   time.Duration(r.stats.lastApplyNanos.Load()),
	}
	for i := range st.ByClass {
		st.ByClass[i] = r.stats.byClass[i].Load()
	}
	for i, b := range r.backends {
		br := BackendRepairs{Backend: b.Name()}
		for k := range br.Count {
			br.Count[k] = r.stats.repairs[i][k].Load()
		}
		st.Repairs = append(st.Repairs, br)
	}
	return st
}
