package enforce

import (
	"context"
	"errors"
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
	// Load, when set, reads the stored decisions in the background of Run
	// (see startup.go); Ready closes once it is done. Without it, Run
	// converges the kernel to the seeded state before anything else.
	Load Loader
	// Verified, when set, is called on the reconciler's goroutine after
	// every verify pass once Run is ready (periodic, on demand, retries),
	// with what it found and repaired: the hook for the daemon's log.
	Verified func(Drift)
	// Geo expands Country and AS decisions into their networks (geo.go);
	// nil refuses them with ErrNoGeoIP.
	Geo GeoNetworks
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
	// ports holds the port-scoped decisions (see portrec.go).
	ports map[portKey]map[int64]stamp
	// geo holds the Country and AS decisions' expansions (see geo.go).
	geo geoState

	stats reconcilerStats
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
	if hasGeo(ds) {
		var geo []model.Decision
		ds, geo = splitGeo(ds)
		r.geo.mu.Lock()
		req, err := r.expandGeo(geo, nil)
		r.geo.mu.Unlock()
		ds = append(ds, req.add...)
		errs = append(errs, err)
	}
	ds, scoped := splitPorts(ds)
	if _, err := r.notePorts(scoped, nil, now); err != nil {
		errs = append(errs, err)
	}
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
	if hasGeo(add) || hasGeo(remove) {
		return r.applyGeo(ctx, add, remove, true)
	}
	add, addPorts := splitPorts(add)
	remove, removePorts := splitPorts(remove)
	if len(addPorts)+len(removePorts) > 0 {
		perr := r.Do(ctx, func() error { return r.applyPorts(ctx, addPorts, removePorts) })
		if len(add)+len(remove) == 0 || ctx.Err() != nil {
			return perr
		}
		return errors.Join(perr, r.Apply(ctx, add, remove))
	}
	res, err := r.call(ctx, &request{add: add, remove: remove})
	if err != nil {
		return err
	}
	return res.err
}

// Enqueue hands decisions over without waiting for the kernel: the hot path
// from an alert. It blocks only when the reconciler is far behind.
func (r *Reconciler) Enqueue(ctx context.Context, add []model.Decision) {
	if hasGeo(add) {
		// Refused ones are counted; the hot path has no one to tell.
		_ = r.applyGeo(ctx, add, nil, false)
		return
	}
	if add, scoped := splitPorts(add); len(scoped) > 0 {
		r.enqueuePorts(ctx, scoped)
		if len(add) == 0 {
			return
		}
		r.Enqueue(ctx, add)
		return
	}
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
	reqs, n, later := r.gather(first)
	if later != nil {
		// Answer after this batch so it sees the batch applied.
		defer r.answerLater(ctx, later)
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

// gather collects the requests queued behind first (or arriving within the
// window) until they carry MaxBatch decisions, and returns them with their
// decision count. A verify or function request ends the batch; it is
// returned apart, to be answered once the batch is applied.
func (r *Reconciler) gather(first *request) (reqs []*request, n int, later *request) {
	reqs = []*request{first}
	n = len(first.add) + len(first.remove)
	var window <-chan time.Time
	if r.cfg.Window > 0 {
		t := time.NewTimer(r.cfg.Window)
		defer t.Stop()
		window = t.C
	}
	for n < r.cfg.MaxBatch {
		var req *request
		select {
		case req = <-r.reqs:
		default:
			if window == nil {
				return reqs, n, nil
			}
			select {
			case req = <-r.reqs:
			case <-window:
				return reqs, n, nil
			}
		}
		if req.verify || req.fn != nil {
			return reqs, n, req
		}
		reqs = append(reqs, req)
		n += len(req.add) + len(req.remove)
	}
	return reqs, n, nil
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
