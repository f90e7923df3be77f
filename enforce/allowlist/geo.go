package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Geo gives the networks a GeoIP database assigns to a country or an
// autonomous system, sorted and disjoint; detect/geoip's DB is one,
// handed over by cmd/moat.
type Geo interface {
	Networks(model.Geo) ([]netip.Prefix, error)
}

// ErrNoGeoIP is reported for country: and as: entries without a
// database: they protect nothing.
var ErrNoGeoIP = errors.New("no GeoIP database configured")

// geoMatch is a live country: or as: entry with its networks.
type geoMatch struct {
	Entry
	nets []netip.Prefix
}

// overlap returns the first of g's networks that overlaps p: the one
// holding an address, or one inside or around a range.
func (g geoMatch) overlap(p netip.Prefix) (netip.Prefix, bool) {
	return firstOverlap(g.nets, p)
}

// firstOverlap finds, by binary search in nets (sorted, disjoint), the
// first network overlapping p.
func firstOverlap(nets []netip.Prefix, p netip.Prefix) (netip.Prefix, bool) {
	p = model.Canonical(p)
	first, last := p.Addr(), lastAddr(p)
	i := sort.Search(len(nets), func(i int) bool { return lastAddr(nets[i]).Compare(first) >= 0 })
	if i < len(nets) && nets[i].Addr().BitLen() == first.BitLen() && nets[i].Addr().Compare(last) <= 0 {
		return nets[i], true
	}
	return netip.Prefix{}, false
}

// allOverlaps appends to out every network of nets overlapping p.
func allOverlaps(out, nets []netip.Prefix, p netip.Prefix) []netip.Prefix {
	p = model.Canonical(p)
	first, last := p.Addr(), lastAddr(p)
	i := sort.Search(len(nets), func(i int) bool { return lastAddr(nets[i]).Compare(first) >= 0 })
	for ; i < len(nets) && nets[i].Addr().BitLen() == first.BitLen() && nets[i].Addr().Compare(last) <= 0; i++ {
		out = append(out, nets[i])
	}
	return out
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// readGeo reads the networks of the geo entries among es that it does not
// hold yet. The database is read once per target: it does not change
// while moat runs.
func (m *Manager) readGeo(es []Entry) {
	for _, e := range es {
		_, _, g, err := parseValue(e.Value, true)
		if err != nil || g.IsZero() {
			continue
		}
		m.mu.RLock()
		_, done := m.geoNets[g]
		m.mu.RUnlock()
		if done {
			continue
		}
		var nets []netip.Prefix
		if m.cfg.Geo == nil {
			err = ErrNoGeoIP
		} else {
			nets, err = m.cfg.Geo.Networks(g)
		}
		if err != nil {
			m.fileError(fmt.Errorf("allowlist entry %s (%s): %w", e.Value, e.Where(), err))
		}
		m.mu.Lock()
		if m.geoNets == nil {
			m.geoNets = map[model.Geo][]netip.Prefix{}
		}
		m.geoNets[g] = nets
		m.mu.Unlock()
	}
}

// GeoOverlaps returns the networks of the live country: and as: entries
// that overlap p: what enforce.Guard.SetExtra wants.
func (m *Manager) GeoOverlaps(p netip.Prefix) []netip.Prefix {
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []netip.Prefix
	for _, g := range m.geoView {
		if g.live(now) {
			out = allOverlaps(out, g.nets, p)
		}
	}
	return out
}

// GeoProtected reports whether a live country: or as: entry protects p.
func (m *Manager) GeoProtected(p netip.Prefix) bool {
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, g := range m.geoView {
		if _, ok := g.overlap(p); ok && g.live(now) {
			return true
		}
	}
	return false
}

// geoKey sums the live geo entries and their networks, for Run to see
// them change.
func (m *Manager) geoKey() string {
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var b strings.Builder
	for _, g := range m.geoView {
		if g.live(now) {
			b.WriteString(g.Value)
			b.WriteByte(' ')
			b.WriteString(strconv.Itoa(len(g.nets)))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// LiftProtected deletes the active address and range decisions that
// protected reports (GeoProtected), in the store and the kernel, and
// returns them. Country and AS decisions are left to the kernel, which
// bans around what the allowlist protects (enforce.Reconciler.Recarve).
func LiftProtected(ctx context.Context, svc Decisions, protected func(netip.Prefix) bool) ([]model.Decision, error) {
	active, err := svc.ActiveDecisions(ctx)
	if err != nil {
		return nil, err
	}
	var out []model.Decision
	var errs []error
	for _, d := range active {
		if d.ID == 0 || !d.Geo.IsZero() || !d.Value.IsValid() || !protected(d.Value) {
			continue
		}
		ds, err := svc.Delete(ctx, store.Filter{ID: d.ID})
		out, errs = append(out, ds...), append(errs, err)
	}
	return out, errors.Join(errs...)
}
