// Package decision is the decision service: it turns alerts into decisions
// with the profiles, keeps allowlisted sources out, persists everything in
// the store and hands bans to the kernel enforcer.
//
// Two paths, two orders. Decisions an admin or a client adds (Add) are
// committed first and enforced second, so an acknowledged decision is never
// lost. Decisions from local alerts (HandleAlert) nobody acknowledges; they
// go to the enforcer while their row is being committed, so SQLite's commit
// is not on the log-line-to-kernel path, and HandleAlert returns when both
// are done (the next alert's escalation count then sees this one).
package decision

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Enforcer puts decisions in the kernel. Apply returns once the kernel
// holds the change; decisions are reference counted by ID.
type Enforcer interface {
	Apply(ctx context.Context, add, remove []model.Decision) error
}

// Errors callers can test for.
var (
	ErrAllowlisted = errors.New("source is allowlisted")
	ErrEmptyFilter = errors.New("empty filter: say which decisions, or delete all explicitly")
	ErrConfigEntry = errors.New("entry comes from the configuration file")
	ErrInvalid     = errors.New("invalid decision")
)

// DefaultRetention is how long ended decisions and old alerts are kept; it
// bounds both the file and how far back escalation looks.
const DefaultRetention = 30 * 24 * time.Hour

// Service is the decision service. It is safe for concurrent use.
type Service struct {
	st       Store
	profiles *profile.Set
	enf      Enforcer

	// Retention of ended decisions and alerts.
	Retention time.Duration
	// MaxAlerts caps the stored alerts, oldest pruned first; 0 is no cap.
	MaxAlerts int
	// Observe, when set, sees every alert's profile outcome (debug traces
	// and warnings) for the caller to log.
	Observe func(model.Alert, profile.Outcome)
	// Protect, when set, refuses values the kernel must never ban
	// (loopback, this host's addresses): refused here, they are neither
	// stored nor served to bouncers.
	Protect func(netip.Prefix) error
	// Enforced, when set, hears of enforced decisions once the kernel
	// holds them (ban) and once they left it (unban: deleted, lifted by
	// the allowlist or expired), so that what runs on a ban (actions)
	// never runs before it. Called on the caller's goroutine, which may be
	// on the ban path: it must not wait (enforce/action only queues).
	Enforced func(ban bool, ds []model.Decision)
	// GeoCheck says whether a Country or AS decision can be enforced: nil
	// when the GeoIP database it needs is configured, else why not. Unset,
	// every such decision is refused (enforce.ErrNoGeoIP).
	GeoCheck func(model.Geo) error

	mu        sync.RWMutex
	fromCfg   []netip.Prefix
	allowlist []store.AllowEntry

	stats struct {
		sync.Mutex
		alerts, decisions, allowlisted, duplicates int64
	}

	activeCache activeCache
}

// New builds the service. enf may be nil when no kernel backend runs
// (decisions are then only stored and served to bouncers). allowlist holds
// the configuration file's entries; entries added from the CLI live in the
// store.
func New(st Store, profiles *profile.Set, enf Enforcer, allowlist ...netip.Prefix) (*Service, error) {
	s := &Service{st: st, profiles: profiles, enf: enf, Retention: DefaultRetention}
	for _, p := range allowlist {
		s.fromCfg = append(s.fromCfg, model.Canonical(p))
	}
	entries, err := st.ListAllow(context.Background())
	if err != nil {
		return nil, fmt.Errorf("decision service: %w", err)
	}
	s.allowlist = entries
	return s, nil
}

// checkGeo refuses a Country or AS decision no database can expand.
func (s *Service) checkGeo(g model.Geo) error {
	err := fmt.Errorf("%w", enforce.ErrNoGeoIP)
	if s.GeoCheck != nil {
		err = s.GeoCheck(g)
	}
	if err != nil {
		return fmt.Errorf("decision %s %s: %w: %w", g.Scope, g.Value, ErrInvalid, err)
	}
	return nil
}

// ErrProtected is wrapped by decisions Protect refused.
var ErrProtected = errors.New("protected address")

func (s *Service) protect(p netip.Prefix) error {
	if s.Protect == nil {
		return nil
	}
	if err := s.Protect(p); err != nil {
		return fmt.Errorf("decision %s: %w: %w", p, ErrProtected, err)
	}
	return nil
}

// Store is the store the service was built over.
func (s *Service) Store() Store { return s.st }

// Allowlisted reports whether p overlaps an allowlist entry. Overlap, not
// containment: a range ban must not cover an allowlisted address either.
func (s *Service) Allowlisted(p netip.Prefix) bool {
	p = model.Canonical(p)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.fromCfg {
		if a.Overlaps(p) {
			return true
		}
	}
	for _, e := range s.allowlist {
		if e.Value.Overlaps(p) {
			return true
		}
	}
	return false
}

func enforceable(ds []model.Decision) []model.Decision {
	var out []model.Decision
	for _, d := range ds {
		if !d.Simulated {
			out = append(out, d)
		}
	}
	return out
}

// HandleAlert stores a local alert, runs the profiles, drops decisions on
// allowlisted sources and enforces the rest (simulated decisions are stored
// only). It returns the decisions taken.
func (s *Service) HandleAlert(ctx context.Context, a model.Alert) ([]model.Decision, error) {
	ds, stored, err := s.Enforce(ctx, a)
	if err != nil {
		return ds, err
	}
	return ds, stored()
}

// Enforce is HandleAlert returning as soon as the kernel holds the bans:
// stored waits for the alert and its decisions to be in the store and
// returns what went wrong on the way, the kernel's error included; call it
// exactly once. Until stored returns, profiles deciding on a later alert of
// the same source may not count these decisions, so a caller keeps one
// source's alerts in order by calling stored first.
//
// An alert whose source already holds an active decision from an alert of
// the same scenario is the attack already banned, raised again (a restart
// re-reads the log lines it had not acknowledged): it takes no decision,
// is not stored, refreshes no ban and counts toward no escalation.
func (s *Service) Enforce(ctx context.Context, a model.Alert) (ds []model.Decision, stored func() error, err error) {
	p, err := s.enforce(ctx, a)
	if err != nil {
		return nil, nil, err
	}
	return p.ds, func() error {
		err := p.wait()
		if err == nil {
			err = p.enfErr
		}
		if err != nil {
			return fmt.Errorf("alert %s %s: %w", a.Scenario, a.Value, err)
		}
		s.stored(p)
		return nil
	}, nil
}

// pending is an alert whose decisions went to the kernel and whose store
// write may still run.
type pending struct {
	a   model.Alert
	ds  []model.Decision
	dup bool
	// notify names the channels the matching profiles send the alert to.
	notify []string
	// first is the first store attempt's result.
	first  chan error
	enfErr error
}

// wait returns the first store attempt's result.
func (p *pending) wait() error {
	if p.first == nil {
		return nil
	}
	return <-p.first
}

// insert stores p again after a failed attempt. Its decision IDs are kept:
// the kernel holds them under those.
func (s *Service) insert(ctx context.Context, p *pending) error {
	_, err := s.st.InsertAlert(ctx, p.a, p.ds)
	return err
}

func (s *Service) stored(p *pending) {
	if !p.dup {
		s.count(func() { s.stats.decisions += int64(len(p.ds)) })
	}
}

// duplicate reports whether a is an attack whose ban is active.
func (s *Service) duplicate(ctx context.Context, a model.Alert, now time.Time) (bool, error) {
	if !a.Source.IsValid() {
		return false, nil
	}
	return s.st.HasActive(ctx, model.ValueString(a.Source), a.Scenario, now)
}

func (s *Service) enforce(ctx context.Context, a model.Alert) (*pending, error) {
	now := time.Now()
	dup, err := s.duplicate(ctx, a, now)
	if err != nil {
		return nil, fmt.Errorf("alert %s %s: %w", a.Scenario, a.Value, err)
	}
	if dup {
		s.count(func() { s.stats.duplicates++ })
		return &pending{a: a, dup: true}, nil
	}
	var ds []model.Decision
	var notify []string
	s.count(func() { s.stats.alerts++ })
	if a.Source.IsValid() && s.Allowlisted(a.Source) {
		s.count(func() { s.stats.allowlisted++ })
	} else {
		out, err := s.profiles.Decide(ctx, a, s.st, now)
		if err != nil {
			return nil, fmt.Errorf("alert %s %s: %w", a.Scenario, a.Value, err)
		}
		if s.Observe != nil {
			s.Observe(a, out)
		}
		notify = out.Notifications
		for _, d := range out.Decisions {
			if s.Allowlisted(d.Value) {
				s.count(func() { s.stats.allowlisted++ })
				continue
			}
			if err := s.protect(d.Value); err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
	}
	if len(ds) > 0 {
		id := s.st.ReserveIDs(len(ds))
		for i := range ds {
			ds[i].ID = id + int64(i)
		}
	}
	p := &pending{a: a, ds: ds, notify: notify, first: make(chan error, 1)}
	go func() {
		// The insert must finish even if ctx ends now: the kernel may
		// already hold the ban.
		p.first <- s.insert(context.WithoutCancel(ctx), p)
	}()
	if add := enforceable(ds); len(add) > 0 && s.enf != nil {
		p.enfErr = s.enf.Apply(ctx, add, nil)
	}
	if p.enfErr == nil {
		s.announce(true, ds)
	}
	return p, nil
}

func (s *Service) count(f func()) {
	s.stats.Lock()
	f()
	s.stats.Unlock()
}

// Stats counts what the service handled since start. Decisions counts
// those stored; Duplicates the alerts raised again for an attack whose ban
// is active (see Enforce), which Alerts leaves out.
type Stats struct {
	Alerts      int64 `json:"alerts"`
	Decisions   int64 `json:"decisions"`
	Allowlisted int64 `json:"allowlisted"`
	Duplicates  int64 `json:"duplicates"`
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	s.stats.Lock()
	defer s.stats.Unlock()
	return Stats{Alerts: s.stats.alerts, Decisions: s.stats.decisions, Allowlisted: s.stats.allowlisted, Duplicates: s.stats.duplicates}
}

// Validate checks a decision from outside (CLI, API) and fills defaults.
func Validate(d *model.Decision, now time.Time) error {
	if err := validateTarget(d); err != nil {
		return err
	}
	if d.Type == "" {
		d.Type = "ban"
	}
	if len(d.Type) > 64 || len(d.Scenario) > 512 || len(d.Reason) > 1024 {
		return fmt.Errorf("%w: field too long", ErrInvalid)
	}
	if !d.Until.IsZero() && !d.Until.After(now) {
		return fmt.Errorf("%w: already expired", ErrInvalid)
	}
	return nil
}

// validateTarget checks what d bans: an address or range, put in
// canonical form, or a country or AS (model.Geo) and nothing else.
func validateTarget(d *model.Decision) error {
	if !d.Geo.IsZero() {
		g, err := model.ParseGeo(d.Geo.Scope, d.Geo.Value)
		switch {
		case err != nil:
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		case d.Value.IsValid():
			return fmt.Errorf("%w: a %s decision has no address or range", ErrInvalid, g.Scope)
		case d.PortScoped():
			return fmt.Errorf("%w: a %s decision bans every port; ports are for address and range decisions", ErrInvalid, g.Scope)
		}
		d.Geo = g
		return nil
	}
	if !d.Value.IsValid() {
		return fmt.Errorf("%w: no address or range", ErrInvalid)
	}
	if z := d.Value.Addr().Zone(); z != "" {
		return fmt.Errorf("%w: zoned address", ErrInvalid)
	}
	d.Value = model.Canonical(d.Value)
	return nil
}

// Add validates, commits and then enforces decisions (IDs are assigned in
// ds). When Add returns nil the decisions are durable and, unless
// simulated, in the kernel.
func (s *Service) Add(ctx context.Context, ds []model.Decision) error {
	now := time.Now()
	for i := range ds {
		if err := Validate(&ds[i], now); err != nil {
			return fmt.Errorf("decision %s: %w", ds[i].ValueString(), err)
		}
		if g := ds[i].Geo; !g.IsZero() {
			// The kernel bans its networks around what the allowlist
			// and the guard protect (enforce.Guard.Carve).
			if err := s.checkGeo(g); err != nil {
				return err
			}
			continue
		}
		if s.Allowlisted(ds[i].Value) {
			return fmt.Errorf("decision %s: %w", ds[i].Value, ErrAllowlisted)
		}
		if err := s.protect(ds[i].Value); err != nil {
			return err
		}
	}
	if err := s.st.InsertDecisions(ctx, ds); err != nil {
		return err
	}
	if add := enforceable(ds); len(add) > 0 && s.enf != nil {
		if err := s.enf.Apply(ctx, add, nil); err != nil {
			return fmt.Errorf("decisions stored but not enforced: %w", err)
		}
	}
	s.announce(true, ds)
	s.count(func() { s.stats.decisions += int64(len(ds)) })
	return nil
}

// Delete deletes the active decisions f selects, in the store and then in
// the kernel, and returns them. An empty filter is refused. A filter naming
// a value also deletes the kernel bans adopted at start without a stored
// decision, returned with ID 0 and AdoptedReason.
func (s *Service) Delete(ctx context.Context, f store.Filter) ([]model.Decision, error) {
	if f.Empty() {
		return nil, ErrEmptyFilter
	}
	ds, err := s.st.DeleteDecisions(ctx, f)
	if err != nil {
		return nil, err
	}
	err = s.unenforce(ctx, ds)
	if af, ok := adoptedFilter(f); ok {
		adopted, aerr := s.deleteAdopted(ctx, af)
		ds, err = append(ds, adopted...), errors.Join(err, aerr)
	}
	return ds, err
}

// DeleteAll deletes every active decision, and the kernel bans adopted
// without one.
func (s *Service) DeleteAll(ctx context.Context) ([]model.Decision, error) {
	ds, err := s.st.DeleteAll(ctx)
	if err != nil {
		return nil, err
	}
	err = s.unenforce(ctx, ds)
	adopted, aerr := s.deleteAdopted(ctx, enforce.AdoptedFilter{All: true})
	return append(ds, adopted...), errors.Join(err, aerr)
}

// adoptedDeleter is an enforcer that adopts, at start, kernel bans the
// store lacks (enforce.Reconciler): a ban enforced by an earlier run that
// never got stored. No store row selects them, so a delete by value asks
// the enforcer for them too.
type adoptedDeleter interface {
	DeleteAdopted(ctx context.Context, f enforce.AdoptedFilter) ([]enforce.Entry, error)
}

// AdoptedReason is the Reason of the decisions Delete reports for adopted
// kernel bans, which have no stored decision (and ID 0).
const AdoptedReason = "adopted from the kernel: banned by an earlier run, never stored"

// adoptedFilter selects the adopted bans a store filter means: it names a
// value, and nothing an adopted ban lacks (an ID, origin or scenario).
func adoptedFilter(f store.Filter) (enforce.AdoptedFilter, bool) {
	af := enforce.AdoptedFilter{IP: f.IP, Range: f.Range, Scope: f.Scope}
	if f.Value != "" {
		p, err := model.ParseValue(f.Value)
		if err != nil {
			return af, false
		}
		af.Exact = p
	}
	if f.ID != 0 || f.Origin != "" || f.Scenario != "" || f.Type != "" && f.Type != "ban" {
		return af, false
	}
	return af, af.IP.IsValid() || af.Range.IsValid() || af.Exact.IsValid()
}

func (s *Service) deleteAdopted(ctx context.Context, f enforce.AdoptedFilter) ([]model.Decision, error) {
	del, ok := s.enf.(adoptedDeleter)
	if !ok {
		return nil, nil
	}
	es, err := del.DeleteAdopted(ctx, f)
	var out []model.Decision
	for _, e := range es {
		out = append(out, model.Decision{Value: e.Prefix, Type: "ban", Reason: AdoptedReason, Until: e.Expiry})
	}
	return out, err
}

func (s *Service) unenforce(ctx context.Context, ds []model.Decision) error {
	if rm := enforceable(ds); len(rm) > 0 && s.enf != nil {
		if err := s.enf.Apply(ctx, nil, rm); err != nil {
			return fmt.Errorf("decisions deleted from the store but not from the kernel: %w", err)
		}
	}
	s.announce(false, ds)
	return nil
}

// announce hands Enforced the enforceable decisions of ds.
func (s *Service) announce(ban bool, ds []model.Decision) {
	if s.Enforced == nil {
		return
	}
	if ds = enforceable(ds); len(ds) > 0 {
		s.Enforced(ban, ds)
	}
}

// expireSomer is a store that returns the decisions it marks expired
// (store.Store), so that their unbans can be announced.
type expireSomer interface {
	ExpireSome(ctx context.Context, now time.Time, max int) ([]model.Decision, error)
}

// expireSlice bounds the expired decisions held at once when each is
// announced.
const expireSlice = 4096

// ActiveDecisions returns the decisions the kernel must hold now (active
// and not simulated): the reconciler's seed at start.
func (s *Service) ActiveDecisions(ctx context.Context) ([]model.Decision, error) {
	ds, err := s.st.Active(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	return enforceable(ds), nil
}

// List returns stored decisions.
func (s *Service) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	return s.st.ListDecisions(ctx, f)
}

// Expire marks decisions that ran out as deleted in the store so bouncer
// streams report them. The kernel expires them on its own.
func (s *Service) Expire(ctx context.Context) (int, error) {
	es, ok := s.st.(expireSomer)
	if s.Enforced == nil || !ok {
		return s.st.Expire(ctx, time.Now())
	}
	now, total := time.Now(), 0
	for {
		ds, err := es.ExpireSome(ctx, now, expireSlice)
		total += len(ds)
		if err != nil {
			return total, err
		}
		s.announce(false, ds)
		if len(ds) < expireSlice {
			return total, nil
		}
	}
}

// Run sweeps expired decisions every second and prunes the store hourly,
// until ctx ends. Errors are returned only through report (may be nil),
// since a failed sweep is retried on the next tick.
func (s *Service) Run(ctx context.Context, report func(error)) error {
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	var err error
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			_, err = s.Expire(ctx)
		case now := <-prune.C:
			_, err = s.st.Prune(ctx, now.Add(-s.Retention))
			if err == nil && s.MaxAlerts > 0 {
				_, err = s.st.CapAlerts(ctx, s.MaxAlerts)
			}
		}
		if err != nil && report != nil && ctx.Err() == nil {
			report(err)
		}
	}
}

// AllowEntry is an allowlist entry as listed.
type AllowEntry struct {
	Value   netip.Prefix `json:"value"`
	Reason  string       `json:"reason"`
	Created time.Time    `json:"created_at,omitzero"`
	// Config marks entries from the configuration file, which only the
	// file can remove.
	Config bool `json:"config"`
}

// AddAllow adds an allowlist entry and lifts the active decisions it
// overlaps (from the store and the kernel). It returns those decisions.
// An entry wider than the ban limits (model.CheckAllowWidth) lifts every
// ban in it and keeps it unbannable, so it is refused unless wide is set.
func (s *Service) AddAllow(ctx context.Context, value netip.Prefix, reason string, wide bool) ([]model.Decision, error) {
	if !value.IsValid() || value.Addr().Zone() != "" {
		return nil, fmt.Errorf("allowlist: %w: bad address or range", ErrInvalid)
	}
	if err := model.CheckAllowWidth(model.Canonical(value)); err != nil && !wide {
		return nil, fmt.Errorf("allowlist: %w: %w; to allowlist it anyway, override with allow_wide (moat allowlist add --allow-wide; API: \"allow_wide\": true)", ErrInvalid, err)
	}
	if len(reason) > 1024 {
		return nil, fmt.Errorf("allowlist: %w: reason too long", ErrInvalid)
	}
	value = model.Canonical(value)
	e := store.AllowEntry{Value: value, Reason: reason, Created: time.Now()}
	if err := s.st.AddAllow(ctx, e); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.allowlist = append(s.allowlist, e)
	s.mu.Unlock()
	active, err := s.st.Active(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, d := range active {
		if value.Overlaps(d.Value) {
			ids = append(ids, d.ID)
		}
	}
	lifted, err := s.st.DeleteIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	return lifted, s.unenforce(ctx, lifted)
}

// DeleteAllow removes a CLI-managed allowlist entry.
func (s *Service) DeleteAllow(ctx context.Context, value netip.Prefix) error {
	value = model.Canonical(value)
	s.mu.RLock()
	fromCfg := slices.Contains(s.fromCfg, value)
	s.mu.RUnlock()
	if fromCfg {
		return fmt.Errorf("allowlist entry %s: %w", model.ValueString(value), ErrConfigEntry)
	}
	if err := s.st.DeleteAllow(ctx, value); err != nil {
		return err
	}
	s.mu.Lock()
	s.allowlist = slices.DeleteFunc(s.allowlist, func(e store.AllowEntry) bool { return e.Value == value })
	s.mu.Unlock()
	return nil
}

// ListAllow lists the configuration's entries, then the stored ones.
func (s *Service) ListAllow() []AllowEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []AllowEntry
	for _, p := range s.fromCfg {
		out = append(out, AllowEntry{Value: p, Reason: "configuration file", Config: true})
	}
	for _, e := range s.allowlist {
		out = append(out, AllowEntry{Value: e.Value, Reason: e.Reason, Created: e.Created})
	}
	return out
}
