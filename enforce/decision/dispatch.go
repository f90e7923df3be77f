package decision

import (
	"context"
	"hash/fnv"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/internal/model"
)

// Batch is what detection hands the dispatcher: the alerts a log line (or
// a clock tick) raised, and Ack, called once they and every alert of the
// batches before are stored, so the line's position may be saved. A
// restart then reads again exactly the lines whose alerts could be lost.
type Batch struct {
	Alerts []model.Alert
	// Ack may be nil (a tick's alerts come from lines already acknowledged).
	Ack func()
}

// DispatcherConfig tunes the dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	// Shards is how many alerts are turned into decisions at once. An
	// alert waits for the kernel, so alerts of other sources are handled
	// beside it; alerts of one source always go to the same shard, in
	// order, so escalation counts each earlier ban. Default 4.
	Shards int
	// MaxPending bounds, per shard, the alerts whose bans are in the kernel
	// and whose store write is pending (or retried, the disk being full).
	// A shard does not wait for a store write before the next alert's ban,
	// only for one of the same source, or when this many are pending.
	// Default 1024.
	MaxPending int
	// RetryMin and RetryMax bound the backoff between store attempts.
	// Defaults 100 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// OnBan, when set, sees every alert's decisions once the kernel holds
	// them; OnError every alert not enforced and every failed store
	// attempt. For the daemon's log; called from the shards.
	OnBan   func(model.Alert, []model.Decision)
	OnError func(model.Alert, error)
	// Notify, when set, is handed each alert whose profiles name
	// notification channels, once the kernel holds its bans. It is called
	// from the shards, so it must not wait (enforce/notify only queues).
	Notify func(a model.Alert, ds []model.Decision, channels []string)
}

// Dispatcher is the alert pipeline: it turns alerts into decisions with
// the service, bans at once, stores behind the ban (retrying until the
// store takes it) and acknowledges log positions once stored.
type Dispatcher struct {
	svc *Service
	cfg DispatcherConfig

	storeErrors, duplicates atomic.Uint64
	pendingStore            atomic.Int64
	created                 created
}

// NewDispatcher returns a dispatcher over svc.
func NewDispatcher(svc *Service, cfg DispatcherConfig) *Dispatcher {
	if cfg.Shards <= 0 {
		cfg.Shards = 4
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1024
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(5*time.Second, cfg.RetryMin)
	}
	return &Dispatcher{svc: svc, cfg: cfg}
}

// DispatchStats counts the pipeline's store side.
type DispatchStats struct {
	// StoreErrors counts failed store attempts; PendingStore is the alerts
	// whose bans are enforced and not yet stored.
	StoreErrors  uint64
	PendingStore int64
	// Duplicates counts alerts raised again for an active ban.
	Duplicates uint64
}

// Stats returns the counters; safe from any goroutine.
func (d *Dispatcher) Stats() DispatchStats {
	return DispatchStats{StoreErrors: d.storeErrors.Load(), PendingStore: d.pendingStore.Load(), Duplicates: d.duplicates.Load()}
}

// Created counts, by scenario and origin, the alerts and decisions stored
// since start.
type Created struct {
	Scenario string
	Origin   model.Origin
	Count    uint64
}

// Created returns what was stored since start.
func (d *Dispatcher) Created() (alerts, decisions []Created) { return d.created.snapshot() }

type job struct {
	a    model.Alert
	mark *mark
}

// Run handles batches until in is closed or ctx ends. Store writes under
// way are finished (one last attempt each, even after ctx ended: the
// kernel already holds their bans) before it returns; alerts left unstored
// leave their lines unacknowledged.
func (d *Dispatcher) Run(ctx context.Context, in <-chan Batch) error {
	g, ctx := errgroup.WithContext(ctx)
	shards := make([]chan job, d.cfg.Shards)
	var marks watermark
	for i := range shards {
		shards[i] = make(chan job, 1024)
		g.Go(func() error {
			d.shard(ctx, shards[i], &marks)
			return nil
		})
	}
	g.Go(func() error {
		defer func() {
			for _, s := range shards {
				close(s)
			}
		}()
		for {
			var b Batch
			var ok bool
			select {
			case <-ctx.Done():
				return nil
			case b, ok = <-in:
				if !ok {
					return nil
				}
			}
			if len(b.Alerts) == 0 && marks.pass(b.Ack) {
				continue
			}
			m := marks.open(b.Ack, len(b.Alerts))
			for _, a := range b.Alerts {
				select {
				case shards[shardOf(a.Value, len(shards))] <- job{a, m}:
				case <-ctx.Done():
					return nil
				}
			}
			marks.done(m) // the batch itself is handed over
		}
	})
	return g.Wait()
}

func shardOf(value string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(value))
	return int(h.Sum32() % uint32(n))
}

// storing is an alert whose bans are enforced and whose store write is
// still running; done closes when it ends.
type storing struct {
	value string
	done  chan struct{}
}

func (d *Dispatcher) shard(ctx context.Context, jobs <-chan job, marks *watermark) {
	var pending []storing // oldest first
	defer func() {
		for _, p := range pending {
			<-p.done
		}
	}()
	for {
		var j job
		var ok bool
		select {
		case <-ctx.Done():
			return
		case j, ok = <-jobs:
			if !ok {
				return
			}
		}
		pending = settle(pending, j.a.Value, d.cfg.MaxPending)
		if p, ok := d.handle(ctx, j, marks); ok {
			pending = append(pending, p)
		}
	}
}

// settle drops the finished store writes, waits for the one of value if
// any, and for the oldest while max are pending.
func settle(pending []storing, value string, max int) []storing {
	kept := pending[:0]
	for _, p := range pending {
		select {
		case <-p.done:
			continue
		default:
		}
		if p.value == value {
			<-p.done
			continue
		}
		kept = append(kept, p)
	}
	clear(pending[len(kept):])
	for len(kept) >= max {
		<-kept[0].done
		kept = kept[1:]
	}
	return kept
}

// handle enforces one alert; its store write goes on in the background.
func (d *Dispatcher) handle(ctx context.Context, j job, marks *watermark) (storing, bool) {
	p, err := d.svc.enforce(ctx, j.a)
	if err != nil {
		if d.cfg.OnError != nil {
			d.cfg.OnError(j.a, err)
		}
		// Nothing to store: the alert is done with (the line raised it,
		// and raising it again would fail the same way).
		marks.done(j.mark)
		return storing{}, false
	}
	if p.dup {
		d.duplicates.Add(1)
		marks.done(j.mark)
		return storing{}, false
	}
	if p.enfErr != nil && d.cfg.OnError != nil {
		d.cfg.OnError(j.a, p.enfErr)
	}
	if d.cfg.OnBan != nil && len(p.ds) > 0 {
		d.cfg.OnBan(j.a, p.ds)
	}
	if d.cfg.Notify != nil && len(p.notify) > 0 {
		d.cfg.Notify(j.a, p.ds, p.notify)
	}
	s := storing{value: j.a.Value, done: make(chan struct{})}
	d.pendingStore.Add(1)
	go func() {
		defer close(s.done)
		defer d.pendingStore.Add(-1)
		if d.store(ctx, p) {
			d.svc.stored(p)
			d.created.add(p.a, p.ds)
			marks.done(j.mark)
		}
	}()
	return s, true
}

// store waits for p's first store attempt and retries with backoff until
// one succeeds or ctx ends. The bans stay in the kernel meanwhile.
func (d *Dispatcher) store(ctx context.Context, p *pending) bool {
	err := p.wait()
	wait := d.cfg.RetryMin
	for err != nil {
		d.storeErrors.Add(1)
		if d.cfg.OnError != nil {
			d.cfg.OnError(p.a, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			// One last attempt: the daemon is stopping, not the disk
			// that failed.
			if err = d.svc.insert(context.WithoutCancel(ctx), p); err != nil {
				d.storeErrors.Add(1)
				return false
			}
			return true
		case <-t.C:
		}
		wait = min(2*wait, d.cfg.RetryMax)
		err = d.svc.insert(context.WithoutCancel(ctx), p)
	}
	return true
}

// watermark acknowledges batches in the order they came, each once its
// alerts and those of every batch before it are done.
type watermark struct {
	mu    sync.Mutex
	queue []*mark
}

// mark is a batch's count of alerts not done yet, plus one while it is
// being handed over.
type mark struct {
	left int
	ack  func()
}

func (w *watermark) open(ack func(), alerts int) *mark {
	m := &mark{left: alerts + 1, ack: ack}
	w.mu.Lock()
	w.queue = append(w.queue, m)
	w.mu.Unlock()
	return m
}

// pass acknowledges a batch without alerts at once when no batch before it
// is pending, and reports whether it did: most lines raise nothing, and
// then need no mark.
func (w *watermark) pass(ack func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 {
		return false
	}
	if ack != nil {
		ack()
	}
	return true
}

func (w *watermark) done(m *mark) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m.left--
	for len(w.queue) > 0 && w.queue[0].left == 0 {
		if ack := w.queue[0].ack; ack != nil {
			ack()
		}
		w.queue[0] = nil
		w.queue = w.queue[1:]
	}
}

// created counts stored alerts and decisions by scenario and origin, for
// moat_alerts_total and moat_decisions_total.
type created struct {
	mu        sync.Mutex
	alerts    map[createdKey]uint64
	decisions map[createdKey]uint64
}

type createdKey struct {
	scenario string
	origin   model.Origin
}

func (c *created) add(a model.Alert, ds []model.Decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.alerts == nil {
		c.alerts, c.decisions = map[createdKey]uint64{}, map[createdKey]uint64{}
	}
	c.alerts[createdKey{a.Scenario, model.OriginLocal}]++
	for _, d := range ds {
		c.decisions[createdKey{d.Scenario, d.Origin}]++
	}
}

func (c *created) snapshot() (alerts, decisions []Created) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.alerts {
		alerts = append(alerts, Created{k.scenario, k.origin, n})
	}
	for k, n := range c.decisions {
		decisions = append(decisions, Created{k.scenario, k.origin, n})
	}
	return alerts, decisions
}

// activeCache keeps the count of active decisions by origin for a while:
// a metrics scrape must not read a million rows each time.
type activeCache struct {
	mu     sync.Mutex
	at     time.Time
	active map[model.Origin]int
}

// activeTTL is how long ActiveByOrigin's answer is reused.
const activeTTL = 15 * time.Second

// ActiveByOrigin counts the decisions the kernel must hold now by origin,
// read from the store at most every 15 seconds.
func (s *Service) ActiveByOrigin(ctx context.Context) (map[model.Origin]int, error) {
	c := &s.activeCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == nil || time.Since(c.at) > activeTTL {
		active, err := s.st.ActiveByOrigin(ctx, time.Now())
		if err != nil {
			return nil, err
		}
		c.active, c.at = active, time.Now()
	}
	return maps.Clone(c.active), nil
}
