package enforce

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// memBackend is a kernel stand-in that records what it holds.
type memBackend struct {
	mu      sync.Mutex
	held    map[netip.Prefix]time.Time
	applies int
	fail    error
}

func newMem() *memBackend { return &memBackend{held: map[netip.Prefix]time.Time{}} }

func (m *memBackend) Name() string { return "mem" }

func (m *memBackend) Apply(_ context.Context, d Diff) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.applies++
	for _, p := range d.Delete {
		delete(m.held, p)
	}
	for _, e := range d.Set {
		m.held[e.Prefix] = e.Expiry
	}
	return nil
}

func (m *memBackend) List(context.Context) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Entry
	for p, e := range m.held {
		out = append(out, Entry{Prefix: p, Expiry: e})
	}
	return out, nil
}

func (m *memBackend) get(p string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.held[netip.MustParsePrefix(p)]
	return e, ok
}

func startReconciler(t *testing.T, cfg ReconcilerConfig, seed []model.Decision, backends ...Backend) *Reconciler {
	t.Helper()
	r := NewReconciler(cfg, backends...)
	if err := r.Seed(seed); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func ban(id int64, value string, d time.Duration) model.Decision {
	p := netip.MustParsePrefix(value)
	var until time.Time
	if d > 0 {
		until = time.Now().Add(d)
	}
	return model.Decision{ID: id, Value: p, Type: "ban", Origin: model.OriginCLI, Until: until}
}

func TestReconcilerRefcountsOverlappingDecisions(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	ctx := context.Background()
	short, long := ban(1, "198.18.0.7/32", time.Hour), ban(2, "198.18.0.7/32", 3*time.Hour)
	if err := r.Apply(ctx, []model.Decision{short, long}, nil); err != nil {
		t.Fatal(err)
	}
	got, ok := mem.get("198.18.0.7/32")
	if !ok || !got.Equal(long.Until) {
		t.Fatalf("kernel expiry = %v (held %v), want the latest, %v", got, ok, long.Until)
	}
	if err := r.Apply(ctx, nil, []model.Decision{long}); err != nil {
		t.Fatal(err)
	}
	got, ok = mem.get("198.18.0.7/32")
	if !ok || !got.Equal(short.Until) {
		t.Fatalf("after removing one of two decisions: expiry %v held %v, want %v", got, ok, short.Until)
	}
	if err := r.Apply(ctx, nil, []model.Decision{short}); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.get("198.18.0.7/32"); ok {
		t.Fatal("address still held after its last decision was removed")
	}
}

func TestReconcilerRebanExtendsExpiry(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	ctx := context.Background()
	first := ban(1, "2001:db8::5/128", time.Minute)
	if err := r.Apply(ctx, []model.Decision{first}, nil); err != nil {
		t.Fatal(err)
	}
	again := first
	again.Until = first.Until.Add(time.Hour)
	if err := r.Apply(ctx, []model.Decision{again}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := mem.get("2001:db8::5/128"); !got.Equal(again.Until) {
		t.Fatalf("expiry after re-ban = %v, want %v", got, again.Until)
	}
}

func TestReconcilerExpiresDecisions(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	if err := r.Apply(context.Background(), []model.Decision{ban(1, "198.18.1.0/24", 50*time.Millisecond)}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := mem.get("198.18.1.0/24"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired decision still held after 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.Stats().Entries != 0 {
		t.Fatalf("entries = %d after expiry, want 0", r.Stats().Entries)
	}
}

func TestReconcilerWidensIPv6(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{IPv6Prefix: 64}, nil, mem)
	if err := r.Apply(context.Background(), []model.Decision{ban(1, "2001:db8:1:2:3:4:5:6/128", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.get("2001:db8:1:2::/64"); !ok {
		t.Fatal("IPv6 ban was not widened to its /64")
	}
}

func TestReconcilerSeedConvergesWithoutFlush(t *testing.T) {
	mem := newMem()
	keep, unstored := netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.2/32")
	d := ban(1, keep.String(), time.Hour)
	mem.held[keep] = d.Until
	mem.held[unstored] = time.Now().Add(time.Hour)
	r := startReconciler(t, ReconcilerConfig{}, []model.Decision{d, ban(2, "198.18.0.3/32", time.Hour)}, mem)
	drift, err := r.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if drift.Total() != 0 {
		t.Fatalf("second verify found drift %+v; the start should have converged", drift)
	}
	// A kernel entry without a decision was enforced by a run killed
	// before its store write: adopted, not deleted (see startup.go).
	if _, ok := mem.get("198.18.0.2/32"); !ok {
		t.Fatal("a ban the kernel held without a stored decision was deleted at start")
	}
	if _, ok := mem.get("198.18.0.3/32"); !ok {
		t.Fatal("a seeded decision is missing after the start")
	}
	// The entry that was already right must not have been rewritten: one
	// apply for the start (add missing) and none since.
	if mem.applies != 1 {
		t.Fatalf("backend applied %d times, want 1", mem.applies)
	}
}

func TestReconcilerVerifyRepairsDrift(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	ctx := context.Background()
	if err := r.Apply(ctx, []model.Decision{ban(1, "198.18.0.9/32", time.Hour), ban(2, "198.18.2.0/24", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	mem.mu.Lock()
	delete(mem.held, netip.MustParsePrefix("198.18.0.9/32"))
	mem.held[netip.MustParsePrefix("198.18.2.0/24")] = time.Now().Add(time.Second)
	mem.mu.Unlock()
	drift, err := r.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bd := drift.Backends[0]
	if len(bd.Missing) != 1 || len(bd.Expiry) != 1 || len(bd.Extra) != 0 {
		t.Fatalf("drift = %+v, want one missing and one expiry difference", bd)
	}
	if _, ok := mem.get("198.18.0.9/32"); !ok {
		t.Fatal("verify did not restore the deleted element")
	}
	if drift, _ := r.Verify(ctx); drift.Total() != 0 {
		t.Fatalf("drift remains after repair: %+v", drift)
	}
}

func TestReconcilerRefusesGuardedPrefixes(t *testing.T) {
	mem := newMem()
	guard := NewGuard(GuardConfig{
		Allowlist: []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")},
		MinBits4:  16, MinBits6: 32,
		HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("198.18.5.5")}, nil },
	})
	r := startReconciler(t, ReconcilerConfig{Guard: guard}, nil, mem)
	for _, v := range []string{"127.0.0.1/32", "::1/128", "198.18.9.7/32", "198.18.0.0/15", "198.18.5.5/32", "198.18.5.0/24", "fe80::1/128", "10.0.0.0/8"} {
		err := r.Apply(context.Background(), []model.Decision{ban(1, v, time.Hour)}, nil)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("ban on %s: err = %v, want ErrRefused", v, err)
		}
		if _, ok := mem.get(netip.MustParsePrefix(v).Masked().String()); ok {
			t.Errorf("refused prefix %s reached the kernel", v)
		}
	}
	if err := r.Apply(context.Background(), []model.Decision{ban(2, "198.18.7.7/32", time.Hour)}, nil); err != nil {
		t.Fatalf("an ordinary ban was refused: %v", err)
	}
	if got := r.Stats().Refused; got != 8 {
		t.Fatalf("refused counter = %d, want 8", got)
	}
}

func TestReconcilerSkipsSimulatedAndOtherTypes(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	sim := ban(1, "198.18.0.1/32", time.Hour)
	sim.Simulated = true
	captcha := ban(2, "198.18.0.2/32", time.Hour)
	captcha.Type = "captcha"
	if err := r.Apply(context.Background(), []model.Decision{sim, captcha}, nil); err != nil {
		t.Fatal(err)
	}
	if len(mem.held) != 0 {
		t.Fatalf("kernel holds %v; simulated and non-ban decisions must not be enforced", mem.held)
	}
}

func TestReconcilerRetriesFailedBackend(t *testing.T) {
	mem := newMem()
	mem.fail = errors.New("netlink: resource busy")
	r := startReconciler(t, ReconcilerConfig{RetryInterval: 20 * time.Millisecond}, nil, mem)
	if err := r.Apply(context.Background(), []model.Decision{ban(1, "198.18.0.1/32", time.Hour)}, nil); err == nil {
		t.Fatal("Apply succeeded while the backend fails")
	}
	mem.mu.Lock()
	mem.fail = nil
	mem.mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := mem.get("198.18.0.1/32"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed apply was not retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.Stats().ApplyErrors == 0 {
		t.Fatal("apply errors were not counted")
	}
}

// nopBackend accepts every diff: it isolates the reconciler's own cost.
type nopBackend struct{ entries int }

func (n *nopBackend) Name() string { return "nop" }
func (n *nopBackend) Apply(_ context.Context, d Diff) error {
	n.entries += len(d.Set) - len(d.Delete)
	return nil
}
func (n *nopBackend) List(context.Context) ([]Entry, error) { return nil, nil }

// BenchmarkReconcilerLoad1M is the reconciler's share of loading a million
// bans: desired-set bookkeeping, expiry heap and diff, no kernel.
func BenchmarkReconcilerLoad1M(b *testing.B) {
	const n = 1_000_000
	ds := make([]model.Decision, n)
	until := time.Now().Add(time.Hour)
	for i := range ds {
		a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		ds[i] = model.Decision{ID: int64(i + 1), Value: netip.PrefixFrom(a, 32), Type: "ban", Until: until}
	}
	for b.Loop() {
		nop := &nopBackend{}
		r := NewReconciler(ReconcilerConfig{MaxBatch: n}, nop)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		if err := r.Apply(ctx, ds, nil); err != nil {
			b.Fatal(err)
		}
		if nop.entries != n {
			b.Fatalf("backend got %d entries, want %d", nop.entries, n)
		}
		cancel()
		<-done
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// TestReconcilerLoadAcrossChunks loads more decisions than one chunk, with
// prefixes covered again after their first entry was handed to the
// backends, by later and by earlier expiries: the kernel ends with the
// latest expiry of each, and nothing else.
func TestReconcilerLoadAcrossChunks(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{MaxBatch: 1 << 20}, nil, mem)
	const distinct = loadChunk + 1000
	base := time.Now().Add(time.Hour)
	var ds []model.Decision
	want := map[netip.Prefix]time.Time{}
	addr := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	for i := range distinct {
		p, until := addr(i), base.Add(time.Duration(i)*time.Millisecond)
		ds = append(ds, model.Decision{ID: int64(len(ds) + 1), Value: p, Type: "ban", Until: until})
		want[p] = until
	}
	for i := 0; i < distinct; i += 7 {
		p, later := addr(i), want[addr(i)].Add(time.Hour)
		ds = append(ds, model.Decision{ID: int64(len(ds) + 1), Value: p, Type: "ban", Until: later})
		want[p] = later
		ds = append(ds, model.Decision{ID: int64(len(ds) + 1), Value: p, Type: "ban", Until: base.Add(-time.Minute)})
	}
	if err := r.Apply(context.Background(), ds, nil); err != nil {
		t.Fatal(err)
	}
	held, _ := mem.List(context.Background())
	if len(held) != len(want) {
		t.Fatalf("backend holds %d entries, want %d", len(held), len(want))
	}
	for _, e := range held {
		if w := want[e.Prefix]; !e.Expiry.Equal(w) {
			t.Fatalf("%v expires %v, want %v", e.Prefix, e.Expiry, w)
		}
	}
	if mem.applies < 2 {
		t.Fatalf("%d backend applies: the load was not streamed in chunks", mem.applies)
	}
	if st := r.Stats(); st.Entries != int64(len(want)) || st.Batches != 1 {
		t.Fatalf("stats %+v, want %d entries in one batch", st, len(want))
	}
}

// TestExpiryHeapOrdersAcrossBlocks pushes and pops across block boundaries,
// interleaved, and checks every pop is the earliest expiry left.
func TestExpiryHeapOrdersAcrossBlocks(t *testing.T) {
	var h expiryHeap
	rng := rand.New(rand.NewPCG(1, 2))
	var want []stamp
	check := func(n int) {
		for range n {
			if h.len() != len(want) {
				t.Fatalf("heap holds %d items, want %d", h.len(), len(want))
			}
			slices.Sort(want)
			got := h.pop().until
			if got != want[0] {
				t.Fatalf("popped %d, want the earliest, %d", got, want[0])
			}
			want = want[1:]
		}
	}
	for round := range 4 {
		for range 3*heapBlock + 17 {
			u := stamp(rng.Int64N(1 << 40))
			// Both families, so both heaps and their merge are used.
			h.push(expiryItem{until: u, key: pkey{v6: u%2 == 0}})
			want = append(want, u)
		}
		check(heapBlock + round*1000)
	}
	check(len(want))
	if n := len(h.v4.blocks) + len(h.v6.blocks); n > 4 {
		t.Fatalf("empty heap keeps %d blocks", n)
	}
}
