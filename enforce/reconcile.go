package enforce

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// ReconcilerConfig tunes the reconciler.
type ReconcilerConfig struct {
	// Window is how long to wait for more decisions once one arrives. Zero
	// applies at once, batching whatever queued up while the previous batch
	// was being written: the lowest latency at no cost in throughput.
	Window time.Duration
	// MaxBatch ends a batch early.
	MaxBatch int
	// VerifyInterval is how often the kernel is compared with the desired
	// set and repaired; zero disables the periodic pass.
	VerifyInterval time.Duration
	// IPv6Prefix widens single IPv6 addresses to their covering prefix.
	IPv6Prefix int
	// Guard refuses dangerous bans; nil refuses nothing (tests only).
	Guard *Guard
	// Applied, when set, is called after each batch reached every backend,
	// with the decisions it carried: the hook for latency metrics.
	Applied func(batch []model.Decision, at time.Time)
	// RetryInterval is how soon a failed backend is repaired.
	RetryInterval time.Duration
}

// Reconciler is the single writer of kernel state. It keeps the desired set
// (each prefix with the decisions that cover it), turns changes into diffs
// and applies them to every backend.
type Reconciler struct {
	cfg      ReconcilerConfig
	backends []Backend
	reqs     chan *request
	ready    chan struct{}

	// Owned by the Run goroutine.
	desired  map[netip.Prefix]*cover
	expiries expiryHeap
	failed   bool
	// skipLists is how many periodic verify passes skip listing elements.
	skipLists int

	stats reconcilerStats
}

// cover is the set of decisions covering one prefix; the kernel holds the
// prefix until the latest of their expiries.
type cover struct {
	until map[int64]time.Time
}

func (c *cover) expiry() time.Time {
	var latest time.Time
	for _, u := range c.until {
		if u.IsZero() {
			return time.Time{}
		}
		if u.After(latest) {
			latest = u
		}
	}
	return latest
}

type request struct {
	add, remove []model.Decision
	verify      bool
	fn          func() error
	done        chan result
}

type result struct {
	err   error
	drift Drift
}

type reconcilerStats struct {
	batches, applyErrors, refused, drift atomic.Uint64
	entries                              atomic.Int64
	byClass                              [numClasses]atomic.Int64
	lastApplyNanos                       atomic.Int64
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

// ReconcilerStats is a snapshot of the reconciler's counters.
type ReconcilerStats struct {
	Batches, ApplyErrors, Refused, Drift uint64
	// Entries is the number of prefixes the kernel should hold; ByClass
	// splits it by ClassNames.
	Entries   int64
	ByClass   [numClasses]int64
	LastApply time.Duration
}

// NewReconciler returns a reconciler over the given backends.
func NewReconciler(cfg ReconcilerConfig, backends ...Backend) *Reconciler {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 128
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	return &Reconciler{
		cfg:      cfg,
		backends: backends,
		reqs:     make(chan *request, 1024),
		ready:    make(chan struct{}),
		desired:  map[netip.Prefix]*cover{},
	}
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
	return st
}

// Do runs fn on the reconciler's goroutine between batches. Backends are
// not safe for concurrent use: whoever reads one (metrics, status) goes
// through here rather than racing the writer.
func (r *Reconciler) Do(ctx context.Context, fn func() error) error {
	req := &request{fn: fn, done: make(chan result, 1)}
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready is closed once Run has made the kernel match the seeded state
// (or tried to: a failing backend is retried in the background).
func (r *Reconciler) Ready() <-chan struct{} { return r.ready }

// Seed sets the desired state before Run starts, typically from the store.
// Run then converges the kernel to it without flushing anything.
func (r *Reconciler) Seed(ds []model.Decision) error {
	var errs []error
	for _, d := range ds {
		if err := r.addDecision(d, time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Apply adds and removes decisions and returns once the kernel holds the
// result (or ctx ends). Refused decisions are reported in the error; the
// others are applied regardless.
func (r *Reconciler) Apply(ctx context.Context, add, remove []model.Decision) error {
	req := &request{add: add, remove: remove, done: make(chan result, 1)}
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Enqueue hands decisions over without waiting for the kernel: the hot path
// from an alert. It blocks only when the reconciler is far behind.
func (r *Reconciler) Enqueue(ctx context.Context, add []model.Decision) {
	select {
	case r.reqs <- &request{add: add}:
	case <-ctx.Done():
	}
}

// Verify compares every backend with the desired set, repairs what differs
// and returns what it found.
func (r *Reconciler) Verify(ctx context.Context) (Drift, error) {
	req := &request{verify: true, done: make(chan result, 1)}
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return Drift{}, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.drift, res.err
	case <-ctx.Done():
		return Drift{}, ctx.Err()
	}
}

// Run converges the kernel to the seeded state, then applies changes until
// ctx ends. It returns nil on cancellation: kernel state stays in place.
func (r *Reconciler) Run(ctx context.Context) error {
	if _, err := r.verify(ctx); err != nil {
		r.failed = true
	}
	close(r.ready)
	var verifyC <-chan time.Time
	if r.cfg.VerifyInterval > 0 {
		t := time.NewTicker(r.cfg.VerifyInterval)
		defer t.Stop()
		verifyC = t.C
	}
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		r.armExpiry(expiry)
		if r.failed {
			retry.Reset(r.cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case req := <-r.reqs:
			r.batch(ctx, req)
		case <-expiry.C:
			r.expire(ctx, time.Now())
		case <-verifyC:
			r.periodicVerify(ctx)
		case <-retry.C:
			if r.failed {
				if _, err := r.verify(ctx); err == nil {
					r.failed = false
				}
			}
		}
	}
}

func (r *Reconciler) armExpiry(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	if len(r.expiries) == 0 {
		t.Reset(time.Hour)
		return
	}
	t.Reset(time.Until(r.expiries[0].until))
}

// batch gathers requests that are already queued (or arrive within the
// window), applies them as one diff and answers every waiter.
func (r *Reconciler) batch(ctx context.Context, first *request) {
	if first.fn != nil {
		first.done <- result{err: first.fn()}
		return
	}
	if first.verify {
		drift, err := r.verify(ctx)
		first.done <- result{err: err, drift: drift}
		return
	}
	reqs := []*request{first}
	n := len(first.add) + len(first.remove)
	var window <-chan time.Time
	if r.cfg.Window > 0 {
		t := time.NewTimer(r.cfg.Window)
		defer t.Stop()
		window = t.C
	}
gather:
	for n < r.cfg.MaxBatch {
		select {
		case req := <-r.reqs:
			if req.verify || req.fn != nil {
				// Answer after this batch so it sees the batch applied.
				defer r.answerLater(ctx, req)
				break gather
			}
			reqs = append(reqs, req)
			n += len(req.add) + len(req.remove)
		default:
			if window == nil {
				break gather
			}
			select {
			case req := <-r.reqs:
				if req.verify || req.fn != nil {
					defer r.answerLater(ctx, req)
					break gather
				}
				reqs = append(reqs, req)
				n += len(req.add) + len(req.remove)
			case <-window:
				break gather
			}
		}
	}

	now := time.Now()
	before := map[netip.Prefix]time.Time{}
	present := map[netip.Prefix]bool{}
	snapshot := func(p netip.Prefix) {
		if _, seen := present[p]; seen {
			return
		}
		c, ok := r.desired[p]
		present[p] = ok
		if ok {
			before[p] = c.expiry()
		}
	}
	errs := make([][]error, len(reqs))
	var applied []model.Decision
	for i, req := range reqs {
		for _, d := range req.remove {
			p, err := r.prefixOf(d)
			if err != nil {
				continue
			}
			snapshot(p)
			r.removeDecision(p, d.ID)
		}
		for _, d := range req.add {
			p, err := r.prefixOf(d)
			if err == nil {
				snapshot(p)
				err = r.addDecision(d, now)
			}
			if err != nil {
				errs[i] = append(errs[i], err)
				continue
			}
			applied = append(applied, d)
		}
	}
	var diff Diff
	for p, was := range present {
		c, ok := r.desired[p]
		switch {
		case ok && (!was || !c.expiry().Equal(before[p])):
			diff.Set = append(diff.Set, Entry{Prefix: p, Expiry: c.expiry()})
		case !ok && was:
			diff.Delete = append(diff.Delete, p)
		}
	}
	applyErr := r.apply(ctx, diff, false)
	at := time.Now()
	if r.cfg.Applied != nil && applyErr == nil && len(applied) > 0 {
		r.cfg.Applied(applied, at)
	}
	for i, req := range reqs {
		if req.done == nil {
			continue
		}
		err := errors.Join(errs[i]...)
		if applyErr != nil {
			err = errors.Join(err, applyErr)
		}
		req.done <- result{err: err}
	}
}

func (r *Reconciler) answerLater(ctx context.Context, req *request) {
	if req.fn != nil {
		req.done <- result{err: req.fn()}
		return
	}
	drift, err := r.verify(ctx)
	req.done <- result{err: err, drift: drift}
}

// apply writes a diff to every backend. A failing backend does not stop the
// others; it is repaired by a verify pass soon after.
func (r *Reconciler) apply(ctx context.Context, diff Diff, expiryOnly bool) error {
	r.stats.entries.Store(int64(len(r.desired)))
	if diff.Empty() {
		return nil
	}
	start := time.Now()
	var errs []error
	for _, b := range r.backends {
		if s, ok := b.(selfExpiring); expiryOnly && ok && s.ExpiresEntries() {
			continue
		}
		if err := b.Apply(ctx, diff); err != nil {
			r.stats.applyErrors.Add(1)
			r.failed = true
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), err))
		}
	}
	r.stats.batches.Add(1)
	r.stats.lastApplyNanos.Store(int64(time.Since(start)))
	return errors.Join(errs...)
}

// prefixOf is the kernel prefix a decision bans.
func (r *Reconciler) prefixOf(d model.Decision) (netip.Prefix, error) {
	p := d.Value
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("decision %d: invalid value", d.ID)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	if p.Addr().Is6() && p.Bits() > r.cfg.IPv6Prefix {
		p = netip.PrefixFrom(p.Addr(), r.cfg.IPv6Prefix)
	}
	return p.Masked(), nil
}

func (r *Reconciler) addDecision(d model.Decision, now time.Time) error {
	if d.Type != "" && d.Type != "ban" || d.Simulated || d.Expired(now) {
		return nil
	}
	p, err := r.prefixOf(d)
	if err != nil {
		return err
	}
	if r.cfg.Guard != nil {
		if err := r.cfg.Guard.Check(p); err != nil {
			r.stats.refused.Add(1)
			return fmt.Errorf("decision %d: %w", d.ID, err)
		}
	}
	c := r.desired[p]
	if c == nil {
		c = &cover{until: map[int64]time.Time{}}
		r.desired[p] = c
		r.stats.byClass[classOf(p)].Add(1)
	}
	c.until[d.ID] = d.Until
	if !d.Until.IsZero() {
		heap.Push(&r.expiries, expiryItem{until: d.Until, prefix: p, id: d.ID})
	}
	r.stats.entries.Store(int64(len(r.desired)))
	return nil
}

func (r *Reconciler) removeDecision(p netip.Prefix, id int64) {
	c := r.desired[p]
	if c == nil {
		return
	}
	delete(c.until, id)
	if len(c.until) == 0 {
		delete(r.desired, p)
		r.stats.byClass[classOf(p)].Add(-1)
	}
}

// expire drops decisions whose time has come. The kernel already stopped
// enforcing them (nft timeouts, XDP expiry in the map value); this only
// frees kernel memory and keeps the desired set exact.
func (r *Reconciler) expire(ctx context.Context, now time.Time) {
	var diff Diff
	touched := map[netip.Prefix]time.Time{}
	for len(r.expiries) > 0 && !r.expiries[0].until.After(now) {
		it := heap.Pop(&r.expiries).(expiryItem)
		c := r.desired[it.prefix]
		if c == nil {
			continue
		}
		// A stale heap item: the decision was re-issued with a later expiry.
		if u, ok := c.until[it.id]; !ok || !u.Equal(it.until) {
			continue
		}
		if _, ok := touched[it.prefix]; !ok {
			touched[it.prefix] = c.expiry()
		}
		r.removeDecision(it.prefix, it.id)
	}
	for p, was := range touched {
		c, ok := r.desired[p]
		switch {
		case !ok:
			diff.Delete = append(diff.Delete, p)
		case !c.expiry().Equal(was):
			diff.Set = append(diff.Set, Entry{Prefix: p, Expiry: c.expiry()})
		}
	}
	r.apply(ctx, diff, true)
}

// selfExpiring is implemented by backends whose kernel objects drop expired
// entries on their own (nft element timeouts): deleting those again would
// only fail on an element the kernel already removed.
type selfExpiring interface {
	ExpiresEntries() bool
}

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
	for _, b := range r.backends {
		bd := BackendDrift{Backend: b.Name()}
		bd.Err = r.verifyBackend(ctx, b, now, &bd)
		if bd.Err != nil {
			r.stats.applyErrors.Add(1)
			errs = append(errs, fmt.Errorf("%s: %w", b.Name(), bd.Err))
		}
		r.stats.drift.Add(uint64(len(bd.Missing) + len(bd.Extra) + len(bd.Expiry)))
		drift.Backends = append(drift.Backends, bd)
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
	seen := make(map[netip.Prefix]bool, len(held))
	for _, e := range held {
		seen[e.Prefix] = true
		c, ok := r.desired[e.Prefix]
		if !ok {
			bd.Extra = append(bd.Extra, e.Prefix)
			diff.Delete = append(diff.Delete, e.Prefix)
			continue
		}
		want := c.expiry()
		if !sameExpiry(want, e.Expiry) {
			bd.Expiry = append(bd.Expiry, e.Prefix)
			diff.Set = append(diff.Set, Entry{Prefix: e.Prefix, Expiry: want})
		}
	}
	for p, c := range r.desired {
		if seen[p] {
			continue
		}
		exp := c.expiry()
		if !exp.IsZero() && !exp.After(now) {
			continue
		}
		bd.Missing = append(bd.Missing, p)
		diff.Set = append(diff.Set, Entry{Prefix: p, Expiry: exp})
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

type expiryItem struct {
	until  time.Time
	prefix netip.Prefix
	id     int64
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
