package allowlist

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Config says where the entries come from.
type Config struct {
	// Static are the configuration file's entries.
	Static []Entry
	// Files are include file patterns (filepath.Glob).
	Files []string
	// Runtime returns the entries added at run time, when set.
	Runtime func() []Entry
	// Resolver resolves hostnames; nil leaves them unresolved (they
	// protect nothing).
	Resolver Resolver
	// Geo gives the networks of the country: and as: entries; nil leaves
	// them protecting nothing (and reported).
	Geo Geo
	// GeoChanged is called by Run when the networks the country: and as:
	// entries protect changed (they were first read, one was added), for
	// the caller to lift the bans now inside them.
	GeoChanged func(ctx context.Context)
	// UTMP is the utmp file whose sessions are protected; "" is off.
	UTMP string
	// Every is how often Files and UTMP are checked for changes.
	Every time.Duration
	// AllowWide accepts include file ranges wider than the ban limits.
	AllowWide bool
	// Changed is called by Run with the ranges that became protected
	// since its previous call (all of them at the first) and the whole
	// protected set, whenever that set changes.
	Changed func(ctx context.Context, added, all []netip.Prefix)
	// Expired is called by Run with each runtime entry past its expiry,
	// for the caller to remove it from where it is kept.
	Expired func(ctx context.Context, e Entry)
	// Report receives the problems Run meets (an unreadable file, a bad
	// line, a failed lookup); Run goes on with what it has.
	Report func(error)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Stats are the manager's counters.
type Stats struct {
	// Entries counts the live entries by source.
	Entries map[string]int
	// SessionRefused counts bans refused because the address had a login
	// session; ResolveErrors failed lookups; FileErrors bad include lines
	// and unreadable files.
	SessionRefused, ResolveErrors, FileErrors uint64
}

// Manager keeps the allowlist current. It is safe for concurrent use.
type Manager struct {
	cfg  Config
	kick chan struct{}

	mu       sync.RWMutex
	files    []Entry
	stamps   map[string]stamp
	sessions []Entry
	utmp     stamp
	hosts    map[string]*host
	// geoNets are the networks of each country: and as: entry's target,
	// read in Step; geoView the live geo entries with their networks.
	geoNets map[model.Geo][]netip.Prefix
	geoView []geoMatch
	view    []Match
	// singles and ranges index view for the check every ban goes
	// through: a map lookup for the single addresses, a scan of the
	// ranges only.
	singles map[netip.Addr][]int
	ranges  []int
	stats   Stats
}

// stamp tells whether a file changed since it was last read.
type stamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// host is a hostname's last answer.
type host struct {
	addrs []netip.Addr
	next  time.Time
	err   error
}

// New returns a manager; Run keeps it current.
func New(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.Report == nil {
		cfg.Report = func(error) {}
	}
	return &Manager{cfg: cfg, kick: make(chan struct{}, 1), hosts: map[string]*host{}, stamps: map[string]stamp{}}
}

// Rebuild recomputes what is protected from the sources as last read and
// the runtime entries as they are now, without reading files or asking
// DNS: an entry just added protects before Run's next step.
func (m *Manager) Rebuild() {
	m.build(m.entries(), m.cfg.Now())
}

// Refresh makes Run look at every source now (after a runtime entry was
// added, say).
func (m *Manager) Refresh() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run keeps the entries current until ctx ends: files and sessions every
// cfg.Every, each hostname when its TTL runs out, each expiry on time.
func (m *Manager) Run(ctx context.Context) error {
	var prev []netip.Prefix
	var prevGeo string
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
		next := m.Step(ctx)
		all := m.Prefixes()
		if added := newPrefixes(prev, all); first || len(added) > 0 || !slices.Equal(prev, all) {
			if m.cfg.Changed != nil {
				m.cfg.Changed(ctx, added, all)
			}
			prev = all
		}
		if geo := m.geoKey(); first || geo != prevGeo {
			if m.cfg.GeoChanged != nil && (geo != "" || prevGeo != "") {
				m.cfg.GeoChanged(ctx)
			}
			prevGeo = geo
		}
		first = false
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

// Step reads every source that is due and returns when the next one is.
func (m *Manager) Step(ctx context.Context) time.Time {
	now := m.cfg.Now()
	m.readFiles()
	m.readSessions()
	static := m.entries()
	next := now.Add(m.cfg.Every)
	m.readGeo(static)
	for _, e := range static {
		if _, h, _, _ := parseValue(e.Value, true); h != "" {
			next = earliest(next, m.resolve(ctx, h, now))
		}
		if !e.Expires.IsZero() {
			if e.live(now) {
				next = earliest(next, e.Expires)
			} else if e.Source == SourceRuntime && m.cfg.Expired != nil {
				m.cfg.Expired(ctx, e)
			}
		}
	}
	m.build(static, now)
	return next
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// entries are the configured, included and runtime entries (not sessions).
func (m *Manager) entries() []Entry {
	out := append([]Entry(nil), m.cfg.Static...)
	m.mu.RLock()
	out = append(out, m.files...)
	m.mu.RUnlock()
	if m.cfg.Runtime != nil {
		out = append(out, m.cfg.Runtime()...)
	}
	return out
}

// resolve looks host up when its answer is due and returns when it is
// due next. A failed lookup keeps the previous addresses: a resolver
// outage must not lift an admin's protection.
func (m *Manager) resolve(ctx context.Context, name string, now time.Time) time.Time {
	m.mu.RLock()
	h := m.hosts[name]
	m.mu.RUnlock()
	if h != nil && now.Before(h.next) {
		return h.next
	}
	if m.cfg.Resolver == nil {
		return now.Add(MaxTTL)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	addrs, ttl, err := m.cfg.Resolver.Resolve(lctx, name)
	cancel()
	nh := &host{addrs: addrs, next: now.Add(clampTTL(ttl))}
	if err != nil {
		m.cfg.Report(err)
		nh = &host{err: err, next: now.Add(5 * time.Second)}
		if h != nil {
			nh.addrs = h.addrs
		}
	}
	m.mu.Lock()
	m.hosts[name] = nh
	if err != nil {
		m.stats.ResolveErrors++
	}
	m.mu.Unlock()
	return nh.next
}

// readFiles rereads the include files when one was added, removed or
// changed.
func (m *Manager) readFiles() {
	stamps := map[string]stamp{}
	for _, g := range m.cfg.Files {
		names, err := filepath.Glob(g)
		if err != nil {
			m.fileError(fmt.Errorf("allowlist_files %s: %w", g, err))
			continue
		}
		for _, n := range names {
			stamps[n] = stampOf(n)
		}
	}
	m.mu.RLock()
	same := len(stamps) == len(m.stamps)
	for n, s := range stamps {
		same = same && m.stamps[n] == s
	}
	m.mu.RUnlock()
	if same {
		return
	}
	names := make([]string, 0, len(stamps))
	for n := range stamps {
		names = append(names, n)
	}
	sort.Strings(names)
	var entries []Entry
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			m.fileError(fmt.Errorf("allowlist file: %w", err))
			continue
		}
		es, errs := ParseFile(n, data, m.cfg.AllowWide)
		entries = append(entries, es...)
		for _, err := range errs {
			m.fileError(err)
		}
	}
	m.mu.Lock()
	m.files, m.stamps = entries, stamps
	m.mu.Unlock()
}

func (m *Manager) fileError(err error) {
	m.cfg.Report(err)
	m.mu.Lock()
	m.stats.FileErrors++
	m.mu.Unlock()
}

func stampOf(name string) stamp {
	st, err := os.Stat(name)
	if err != nil {
		return stamp{}
	}
	return stamp{mod: st.ModTime(), size: st.Size(), ok: true}
}

// readSessions rereads utmp when it changed.
func (m *Manager) readSessions() {
	if m.cfg.UTMP == "" {
		return
	}
	st := stampOf(m.cfg.UTMP)
	m.mu.RLock()
	same := st == m.utmp
	m.mu.RUnlock()
	if same {
		return
	}
	var es []Entry
	ss, err := ReadUTMP(m.cfg.UTMP)
	if err != nil && st.ok {
		m.cfg.Report(err)
	}
	for _, s := range ss {
		es = append(es, Entry{Value: s.Addr.String(), Comment: fmt.Sprintf("%s on %s since %s", s.User, s.Line, s.Start.Format(time.RFC3339)), Source: SourceSession, File: m.cfg.UTMP})
	}
	m.mu.Lock()
	m.sessions, m.utmp = es, st
	m.mu.Unlock()
}

// build turns the entries into the ranges they protect.
func (m *Manager) build(static []Entry, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	view := make([]Match, 0, len(static)+len(m.sessions))
	var geoView []geoMatch
	counts := map[string]int{}
	for _, e := range append(static, m.sessions...) {
		if !e.live(now) {
			continue
		}
		counts[e.Source]++
		p, h, g, err := parseValue(e.Value, true)
		if err != nil {
			continue
		}
		if !g.IsZero() {
			if nets := m.geoNets[g]; len(nets) > 0 {
				geoView = append(geoView, geoMatch{Entry: e, nets: nets})
			}
			continue
		}
		if h == "" {
			view = append(view, Match{Entry: e, Prefix: p})
			continue
		}
		if hs := m.hosts[h]; hs != nil {
			for _, a := range hs.addrs {
				view = append(view, Match{Entry: e, Prefix: netip.PrefixFrom(a, a.BitLen())})
			}
		}
	}
	m.singles, m.ranges = make(map[netip.Addr][]int, len(view)), nil
	for i, v := range view {
		if v.Prefix.IsSingleIP() {
			m.singles[v.Prefix.Addr()] = append(m.singles[v.Prefix.Addr()], i)
		} else {
			m.ranges = append(m.ranges, i)
		}
	}
	m.view, m.geoView, m.stats.Entries = view, geoView, counts
}

// Check returns the entries protecting p (an address or a range they
// overlap), live at the time of the call.
func (m *Manager) Check(p netip.Prefix) []Match {
	p = model.Canonical(p)
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var idx []int
	if p.IsSingleIP() {
		idx = append(idx, m.singles[p.Addr()]...)
		for _, i := range m.ranges {
			if m.view[i].Prefix.Contains(p.Addr()) {
				idx = append(idx, i)
			}
		}
		slices.Sort(idx)
	} else {
		for i, v := range m.view {
			if v.Prefix.Overlaps(p) {
				idx = append(idx, i)
			}
		}
	}
	var out []Match
	for _, i := range idx {
		if m.view[i].live(now) {
			out = append(out, m.view[i])
		}
	}
	for _, g := range m.geoView {
		if n, ok := g.overlap(p); ok && g.live(now) {
			out = append(out, Match{Entry: g.Entry, Prefix: n})
		}
	}
	return out
}

// Protect returns a *ProtectedError when an entry protects p; refusals
// for a login session are counted.
func (m *Manager) Protect(p netip.Prefix) error {
	ms := m.Check(p)
	if len(ms) == 0 {
		return nil
	}
	first := ms[0]
	for _, x := range ms {
		if x.Source != SourceSession {
			first = x
			break
		}
	}
	if first.Source == SourceSession {
		m.mu.Lock()
		m.stats.SessionRefused++
		m.mu.Unlock()
	}
	return &ProtectedError{Prefix: p, Match: first}
}

// Prefixes returns the protected ranges, sorted and unique.
func (m *Manager) Prefixes() []netip.Prefix {
	now := m.cfg.Now()
	m.mu.RLock()
	out := make([]netip.Prefix, 0, len(m.view))
	for _, v := range m.view {
		if v.live(now) {
			out = append(out, v.Prefix)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// Stats returns a copy of the counters.
func (m *Manager) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := m.stats
	s.Entries = make(map[string]int, len(m.stats.Entries))
	for k, v := range m.stats.Entries {
		s.Entries[k] = v
	}
	return s
}

// newPrefixes are the ranges of cur not in prev (both sorted).
func newPrefixes(prev, cur []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range cur {
		if !slices.Contains(prev, p) {
			out = append(out, p)
		}
	}
	return out
}
