package decision

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

// TestSettleKeepsOneSourceInOrder: a new alert waits for a pending store
// write of its own source, not for others, and never lets more than max
// pile up.
func TestSettleKeepsOneSourceInOrder(t *testing.T) {
	const max = 8
	pending := func(v string) storing { return storing{value: v, done: make(chan struct{})} }
	a, b := pending("198.18.0.1"), pending("198.18.0.2")
	finished := pending("198.18.0.3")
	close(finished.done)

	got := settle([]storing{a, b, finished}, "198.18.0.9", max)
	if len(got) != 2 || got[0].value != a.value || got[1].value != b.value {
		t.Fatalf("settle kept %v, want the two pending writes of other sources", got)
	}
	returned := make(chan []storing)
	go func() { returned <- settle([]storing{a, b}, a.value, max) }()
	select {
	case <-returned:
		t.Fatal("settle returned while the same source's write was pending")
	case <-time.After(50 * time.Millisecond):
	}
	close(a.done)
	if got := <-returned; len(got) != 1 || got[0].value != b.value {
		t.Fatalf("after the write ended, settle kept %v, want only the other source", got)
	}
	var full []storing
	for range max {
		full = append(full, pending("198.18.1.1"))
	}
	go func() { returned <- settle(full, "198.18.2.2", max) }()
	select {
	case <-returned:
		t.Fatalf("settle returned with %d writes pending", max)
	case <-time.After(50 * time.Millisecond):
	}
	close(full[0].done)
	if got := <-returned; len(got) != max-1 {
		t.Fatalf("settle kept %d pending writes, want %d", len(got), max-1)
	}
}

// TestWatermarkAcksInOrder: a batch is acknowledged once it and every
// batch before it are done, whatever order their alerts finish in.
func TestWatermarkAcksInOrder(t *testing.T) {
	cases := []struct {
		name   string
		alerts []int // per batch
		finish []int // batch index of each alert finishing, in order
		want   []int // batches acknowledged
	}{
		{"in order", []int{1, 1, 1}, []int{0, 1, 2}, []int{0, 1, 2}},
		{"later first", []int{1, 1, 1}, []int{2, 1}, nil},
		{"later first then head", []int{1, 1, 1}, []int{2, 1, 0}, []int{0, 1, 2}},
		{"empty batches follow the head", []int{2, 0, 0, 1}, []int{0, 3}, nil},
		{"empty batches released", []int{2, 0, 0, 1}, []int{0, 3, 0}, []int{0, 1, 2, 3}},
		{"empty batch with nothing pending", []int{0, 1, 0}, []int{1}, []int{0, 1, 2}},
		{"empty batch alone", []int{0}, nil, []int{0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w watermark
			var acked []int
			marks := make([]*mark, len(c.alerts))
			for i, n := range c.alerts {
				ack := func() { acked = append(acked, i) }
				if n == 0 && w.pass(ack) {
					continue
				}
				marks[i] = w.open(ack, n)
				w.done(marks[i])
			}
			for _, i := range c.finish {
				w.done(marks[i])
			}
			if !slices.Equal(acked, c.want) {
				t.Fatalf("acknowledged %v, want %v", acked, c.want)
			}
		})
	}
}

// runDispatcher runs d over a channel it returns, until the test ends.
func runDispatcher(t *testing.T, d *Dispatcher) chan<- Batch {
	t.Helper()
	in := make(chan Batch)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, in) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return in
}

// acks records acknowledgements.
type acks struct {
	mu  sync.Mutex
	got []int
}

func (a *acks) ack(i int) func() {
	return func() {
		a.mu.Lock()
		a.got = append(a.got, i)
		a.mu.Unlock()
	}
}

func (a *acks) list() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDispatcherAcksOnceStored: every line is acknowledged, in order, and
// only when its alerts' decisions are in the store.
func TestDispatcherAcksOnceStored(t *testing.T) {
	enf := newFake()
	svc := newService(t, enf)
	var ack acks
	var unstoredAtAck []int
	const lines = 200
	in := runDispatcher(t, NewDispatcher(svc, DispatcherConfig{}))
	for i := range lines {
		var alerts []model.Alert
		ip := netip.AddrFrom4([4]byte{198, 18, 4, byte(i)}).String()
		if i%3 == 0 {
			alerts = append(alerts, alert(ip))
		}
		in <- Batch{Alerts: alerts, Ack: func() {
			if len(alerts) > 0 {
				if recs, _ := svc.List(context.Background(), store.Filter{Value: ip}); len(recs) != 1 {
					unstoredAtAck = append(unstoredAtAck, i)
				}
			}
			ack.ack(i)()
		}}
	}
	waitUntil(t, "every line acknowledged", func() bool { return len(ack.list()) == lines })
	want := make([]int, lines)
	for i := range want {
		want[i] = i
	}
	if got := ack.list(); !slices.Equal(got, want) {
		t.Fatalf("acknowledged out of order: %v", got)
	}
	if len(unstoredAtAck) > 0 {
		t.Fatalf("lines %v acknowledged before their decisions were stored", unstoredAtAck)
	}
}

// TestDispatcherSameAttackAfterRestart: a restart re-reads lines it had
// not acknowledged and raises their alerts again. The attack already
// banned takes no second decision, refreshes no ban and does not escalate
// the next real offence.
func TestDispatcherSameAttackAfterRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	open := func(enf Enforcer) (*Service, *store.Store) {
		st, err := store.Open(ctx, path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := New(st, mustProfiles(t), enf)
		if err != nil {
			t.Fatal(err)
		}
		return svc, st
	}
	enf := newFake()
	svc, st := open(enf)
	if ds, err := svc.HandleAlert(ctx, alert("198.18.5.5")); err != nil || len(ds) != 1 {
		t.Fatalf("first alert: %v, %v", ds, err)
	}
	st.Close()

	// The restarted daemon, with the same kernel.
	svc, st = open(enf)
	defer st.Close()
	calls := enf.calls
	d := NewDispatcher(svc, DispatcherConfig{})
	in := runDispatcher(t, d)
	var ack acks
	for i := range 3 { // the same lines read again
		in <- Batch{Alerts: []model.Alert{alert("198.18.5.5")}, Ack: ack.ack(i)}
	}
	waitUntil(t, "the lines read again acknowledged", func() bool { return len(ack.list()) == 3 })
	if recs, _ := svc.List(ctx, store.Filter{Value: "198.18.5.5", History: true}); len(recs) != 1 {
		t.Fatalf("%d decisions on the source, want the first one only", len(recs))
	}
	if alerts, _ := st.ListAlerts(ctx, store.AlertFilter{}); len(alerts) != 1 {
		t.Fatalf("%d alerts stored, want 1", len(alerts))
	}
	if enf.calls != calls {
		t.Fatalf("the kernel was asked %d more times, want none", enf.calls-calls)
	}
	if s := d.Stats(); s.Duplicates != 3 {
		t.Fatalf("stats %+v, want 3 duplicates", s)
	}
	if _, decisions := d.Created(); len(decisions) != 0 {
		t.Fatalf("created %v, want nothing counted", decisions)
	}
	// Another scenario on the same source is another attack.
	other := alert("198.18.5.5")
	other.Scenario = "crowdsecurity/ssh-slow-bf"
	if ds, err := svc.HandleAlert(ctx, other); err != nil || len(ds) != 1 {
		t.Fatalf("another scenario: %v, %v", ds, err)
	}
	// After the bans end, the next offence escalates once per earlier
	// decision, two of them: 16h, not more.
	if _, err := svc.Delete(ctx, store.Filter{Value: "198.18.5.5"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ds, err := svc.HandleAlert(ctx, alert("198.18.5.5"))
	if err != nil || len(ds) != 1 {
		t.Fatalf("repeat offence: %v, %v", ds, err)
	}
	if got := ds[0].Until.Sub(start).Round(time.Hour); got != 16*time.Hour {
		t.Fatalf("repeat offence banned for %s, want 16h (two earlier decisions)", got)
	}
}

func mustProfiles(t *testing.T) *profile.Set {
	t.Helper()
	p, err := profile.Parse("packaging/profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
