package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
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
	// Load, when set, reads the stored decisions in the background of Run
	// (see startup.go); Ready closes once it is done. Without it, Run
	// converges the kernel to the seeded state before anything else.
	Load Loader
	// Verified, when set, is called on the reconciler's goroutine after
	// every verify pass once Run is ready (periodic, on demand, retries),
	// with what it found and repaired: the hook for the daemon's log.
	Verified func(Drift)
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
	desired  desiredSet
	more     map[pkey]map[int64]stamp // see cover
	expiries expiryHeap
	failed   bool
	// skipLists is how many periodic verify passes skip listing elements.
	skipLists int
	// loading is set while Load fills the desired set; adopt while kernel
	// entries no decision covers are adopted rather than deleted (from the
	// start until a verify pass went through).
	loading, adopt bool
	loadN          int
	loadErr        error
	adopted        atomic.Uint64

	stats reconcilerStats
}

// pkey is a prefix as a map key. netip.Prefix holds a zone pointer, and
// hashing and GC-scanning a million of them dominated the cost of loading a
// million bans; this key has no pointer.
type pkey struct {
	a    [16]byte
	bits uint8
	v6   bool
}

func keyOf(p netip.Prefix) pkey {
	return pkey{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (k pkey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.a)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// stamp is an expiry in Unix nanoseconds, 0 for never: a time.Time holds a
// location pointer, and the desired set keeps one per ban.
type stamp int64

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	return stamp(t.UnixNano())
}

func (s stamp) time() time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(s))
}

// cover is the set of decisions covering one prefix; the kernel holds the
// prefix until the latest of their expiries. Nearly every prefix has one
// decision, kept inline; the rare further ones live in Reconciler.more, so
// the desired set holds no pointer and the garbage collector never scans
// it (at a million bans it was tens of megabytes on every cycle).
type cover struct {
	id    int64
	until stamp
}

// shared reports whether further decisions cover k, in r.more.
func (r *Reconciler) shared(k pkey) bool {
	if len(r.more) == 0 {
		return false
	}
	_, ok := r.more[k]
	return ok
}

func (r *Reconciler) expiryOf(k pkey, c cover) stamp {
	latest := c.until
	if latest == 0 || !r.shared(k) {
		return latest
	}
	for _, u := range r.more[k] {
		if u == 0 {
			return 0
		}
		latest = max(latest, u)
	}
	return latest
}

// coverGet returns the expiry of decision id, if it covers k.
func (r *Reconciler) coverGet(k pkey, c cover, id int64) (stamp, bool) {
	if c.id == id {
		return c.until, true
	}
	u, ok := r.more[k][id]
	return u, ok
}

func (r *Reconciler) coverSet(k pkey, c *cover, id int64, until stamp) {
	if c.id == id {
		c.until = until
		return
	}
	m := r.more[k]
	if m == nil {
		m = map[int64]stamp{}
		r.more[k] = m
	}
	m[id] = until
}

// coverRemove drops decision id and reports whether any decision is left.
func (r *Reconciler) coverRemove(k pkey, c *cover, id int64) bool {
	m, shared := r.more[k]
	if !shared {
		return c.id != id
	}
	if c.id == id {
		for other, u := range m {
			c.id, c.until = other, u
			id = other
			break
		}
	}
	delete(m, id)
	if len(m) == 0 {
		delete(r.more, k)
	}
	return true
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
	r := &Reconciler{
		cfg:      cfg,
		backends: backends,
		reqs:     make(chan *request, 1024),
		ready:    make(chan struct{}),
		desired:  newDesiredSet(),
		more:     map[pkey]map[int64]stamp{},
	}
	r.stats.repairs = make([][numRepairKinds]atomic.Uint64, len(backends))
	return r
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

// Do runs fn on the reconciler's goroutine between batches. Backends are
// not safe for concurrent use: whoever reads one (metrics, status) goes
// through here rather than racing the writer.
func (r *Reconciler) Do(ctx context.Context, fn func() error) error {
	res, err := r.call(ctx, &request{fn: fn})
	if err != nil {
		return err
	}
	return res.err
}

// call hands req to the Run goroutine and waits for its answer.
func (r *Reconciler) call(ctx context.Context, req *request) (result, error) {
	req.done = make(chan result, 1)
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res, nil
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
}

// Ready is closed once Run has made the kernel match the seeded state, or
// with a Loader once the stored decisions are loaded (or it tried to: a
// failing backend is retried in the background). Decisions are applied
// before that.
func (r *Reconciler) Ready() <-chan struct{} { return r.ready }

// Seed sets the desired state before Run starts, typically from the store.
// Run then converges the kernel to it without flushing anything.
func (r *Reconciler) Seed(ds []model.Decision) error {
	var errs []error
	now := time.Now()
	for _, d := range ds {
		p, err := r.prefixOf(d)
		if err == nil {
			_, _, err = r.addDecision(d, p, now)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	r.stats.entries.Store(int64(r.desired.len()))
	return errors.Join(errs...)
}

// Apply adds and removes decisions and returns once the kernel holds the
// result (or ctx ends). Refused decisions are reported in the error; the
// others are applied regardless.
func (r *Reconciler) Apply(ctx context.Context, add, remove []model.Decision) error {
	res, err := r.call(ctx, &request{add: add, remove: remove})
	if err != nil {
		return err
	}
	return res.err
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
	res, err := r.call(ctx, &request{verify: true})
	if err != nil {
		return Drift{}, err
	}
	return res.drift, res.err
}

// Run converges the kernel to the seeded state, then applies changes until
// ctx ends. It returns nil on cancellation: kernel state stays in place.
func (r *Reconciler) Run(ctx context.Context) error {
	r.adopt = true
	if r.cfg.Load != nil {
		r.loading = true
		for _, b := range r.backends {
			if e, ok := b.(ensurer); ok {
				if err := e.Ensure(ctx); err != nil {
					r.stats.applyErrors.Add(1)
					r.failed = true
				}
			}
		}
		go r.startLoad(ctx)
	} else {
		if _, err := r.verify(ctx); err != nil {
			r.failed = true
		}
		close(r.ready)
	}
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
			// Listing a kernel while its decisions load costs the start
			// time and finds only what the load writes anyway.
			if !r.loading {
				r.periodicVerify(ctx)
			}
		case <-retry.C:
			if r.failed && !r.loading {
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
	if r.expiries.len() == 0 {
		t.Reset(time.Hour)
		return
	}
	t.Reset(time.Until(r.expiries.top().until.time()))
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
	if r.desired.len() == 0 && !anyRemove(reqs) {
		r.load(ctx, reqs, now)
		return
	}
	// What each touched prefix was before the batch, to diff against.
	type was struct {
		present bool
		expiry  stamp
	}
	touched := make(map[pkey]was, n)
	snapshot := func(p netip.Prefix) {
		k := keyOf(p)
		if _, seen := touched[k]; seen {
			return
		}
		c, ok := r.desired.get(k)
		touched[k] = was{ok, r.expiryOf(k, c)}
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
			if k := keyOf(p); r.loading && !touched[k].present {
				// Not loaded yet, but in the kernel: a decision removed
				// on purpose leaves the kernel now. If another one still
				// to load covers p, the load puts p back.
				touched[k] = was{present: true, expiry: -1}
			}
			r.removeDecision(p, d.ID)
		}
		for _, d := range req.add {
			p, err := r.prefixOf(d)
			if err == nil {
				snapshot(p)
				_, _, err = r.addDecision(d, p, now)
			}
			if err != nil {
				errs[i] = append(errs[i], err)
				continue
			}
			if r.cfg.Applied != nil {
				applied = append(applied, d)
			}
		}
	}
	diff := Diff{Set: make([]Entry, 0, len(touched))}
	for k, w := range touched {
		c, ok := r.desired.get(k)
		exp := r.expiryOf(k, c)
		switch {
		case ok && (!w.present || exp != w.expiry):
			diff.Set = append(diff.Set, Entry{Prefix: k.prefix(), Expiry: exp.time()})
		case !ok && w.present:
			diff.Delete = append(diff.Delete, k.prefix())
		}
	}
	r.finish(ctx, reqs, errs, applied, diff)
}

func (r *Reconciler) answerLater(ctx context.Context, req *request) {
	if req.fn != nil {
		req.done <- result{err: req.fn()}
		return
	}
	drift, err := r.verify(ctx)
	req.done <- result{err: err, drift: drift}
}

// finish applies a batch's diff and answers its waiters.
func (r *Reconciler) finish(ctx context.Context, reqs []*request, errs [][]error, applied []model.Decision, diff Diff) {
	r.answer(reqs, errs, applied, r.apply(ctx, diff, false))
}

// answer tells a batch's waiters how it went: their own refused decisions
// and the backends' error.
func (r *Reconciler) answer(reqs []*request, errs [][]error, applied []model.Decision, applyErr error) {
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

func anyRemove(reqs []*request) bool {
	for _, req := range reqs {
		if len(req.remove) > 0 {
			return true
		}
	}
	return false
}

// loadChunk is how many entries a load hands the backends at a time: they
// write one chunk to the kernel while the next is being built.
const loadChunk = 1 << 16

// load is batch for the first batch into an empty desired set (a first
// start, a bulk import): the diff is the desired set itself, so it is
// streamed to the backends in chunks as it is built, and building the
// desired set overlaps with the kernel writes instead of preceding them.
func (r *Reconciler) load(ctx context.Context, reqs []*request, now time.Time) {
	total := 0
	for _, req := range reqs {
		total += len(req.add)
	}
	r.desired = newDesiredSet()
	st := r.openStream(ctx)
	chunk := st.buffer(min(total, loadChunk))
	// Prefixes covered again after their first entry went out: the expiry
	// sent may no longer be the latest, so they are sent again at the end.
	var again map[pkey]struct{}
	errs := make([][]error, len(reqs))
	var applied []model.Decision
	for i, req := range reqs {
		for _, d := range req.add {
			p, err := r.prefixOf(d)
			var added, fresh bool
			if err == nil {
				added, fresh, err = r.addDecision(d, p, now)
			}
			if err != nil {
				errs[i] = append(errs[i], err)
				continue
			}
			switch {
			case fresh:
				chunk = append(chunk, Entry{Prefix: p, Expiry: stampOf(d.Until).time()})
				if len(chunk) == loadChunk {
					st.send(chunk)
					chunk = st.buffer(loadChunk)
				}
			case added:
				if again == nil {
					again = map[pkey]struct{}{}
				}
				again[keyOf(p)] = struct{}{}
			}
			if r.cfg.Applied != nil {
				applied = append(applied, d)
			}
		}
	}
	r.stats.entries.Store(int64(r.desired.len()))
	if len(chunk) > 0 {
		st.send(chunk)
	}
	// Apart from the last chunk, which may hold the same prefixes: a diff
	// names a prefix once.
	if len(again) > 0 {
		fix := make([]Entry, 0, len(again))
		for k := range again {
			c, _ := r.desired.get(k)
			fix = append(fix, Entry{Prefix: k.prefix(), Expiry: r.expiryOf(k, c).time()})
		}
		st.send(fix)
	}
	r.answer(reqs, errs, applied, r.closeStream(st))
}

// stream feeds each backend its own sequence of Apply calls, so the
// backends write side by side and while the reconciler works.
type stream struct {
	feeds []chan *streamChunk
	errs  []error
	wg    sync.WaitGroup
	start time.Time
	sent  bool
	// free holds chunks every backend is done with, for reuse: a cold
	// load's cost is mostly fresh memory.
	free chan []Entry
}

// streamChunk is one chunk and the number of backends still reading it.
type streamChunk struct {
	set     []Entry
	readers atomic.Int32
}

func (r *Reconciler) openStream(ctx context.Context) *stream {
	st := &stream{errs: make([]error, len(r.backends)), start: time.Now(), free: make(chan []Entry, 4)}
	for i, b := range r.backends {
		feed := make(chan *streamChunk, 2)
		st.feeds = append(st.feeds, feed)
		st.wg.Go(func() {
			// A failed chunk does not stop the next ones: the more of the
			// load the kernel holds, the less a verify pass must repair.
			for c := range feed {
				if err := b.Apply(ctx, Diff{Set: c.set}); err != nil && st.errs[i] == nil {
					st.errs[i] = fmt.Errorf("%s: %w", b.Name(), err)
				}
				if c.readers.Add(-1) == 0 {
					select {
					case st.free <- c.set[:0]:
					default:
					}
				}
			}
		})
	}
	return st
}

// buffer returns an empty chunk with room for n entries.
func (st *stream) buffer(n int) []Entry {
	select {
	case b := <-st.free:
		if cap(b) >= n {
			return b
		}
	default:
	}
	return make([]Entry, 0, n)
}

// send hands every backend the same entries; backends only read them. The
// caller gives up set.
func (st *stream) send(set []Entry) {
	st.sent = true
	c := &streamChunk{set: set}
	c.readers.Store(int32(len(st.feeds)))
	for _, f := range st.feeds {
		f <- c
	}
}

func (r *Reconciler) closeStream(st *stream) error {
	for _, f := range st.feeds {
		close(f)
	}
	st.wg.Wait()
	if !st.sent {
		return nil
	}
	return r.applied(st.start, errors.Join(st.errs...))
}

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
		r.expiries.push(expiryItem{until: until, key: k, id: d.ID})
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

// expire drops decisions whose time has come. The kernel already stopped
// enforcing them (nft timeouts, XDP expiry in the map value); this only
// frees kernel memory and keeps the desired set exact.
func (r *Reconciler) expire(ctx context.Context, now time.Time) {
	var diff Diff
	touched := map[pkey]stamp{}
	cut := stampOf(now)
	for r.expiries.len() > 0 && r.expiries.top().until <= cut {
		it := r.expiries.pop()
		c, ok := r.desired.get(it.key)
		if !ok {
			continue
		}
		// A stale heap item: the decision was re-issued with a later expiry.
		if u, ok := r.coverGet(it.key, c, it.id); !ok || u != it.until {
			continue
		}
		if _, ok := touched[it.key]; !ok {
			touched[it.key] = r.expiryOf(it.key, c)
		}
		r.removeDecision(it.key.prefix(), it.id)
	}
	for k, was := range touched {
		c, ok := r.desired.get(k)
		exp := r.expiryOf(k, c)
		switch {
		case !ok:
			diff.Delete = append(diff.Delete, k.prefix())
		case exp != was:
			diff.Set = append(diff.Set, Entry{Prefix: k.prefix(), Expiry: exp.time()})
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
