package enforce

import (
	"context"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// A forever ban (zero Until) reaches the kernel without a timeout and no
// expiry pass removes it, alone or beside a timed ban of the same address
// that expires.
func TestReconcilerKeepsForeverBans(t *testing.T) {
	mem := newMem()
	r := startReconciler(t, ReconcilerConfig{}, nil, mem)
	ctx := context.Background()
	ds := []model.Decision{
		ban(1, "198.18.3.1/32", 0),
		ban(2, "198.18.3.2/32", 0),
		ban(3, "198.18.3.2/32", 50*time.Millisecond),
		ban(4, "198.18.3.3/32", 50*time.Millisecond),
	}
	if err := r.Apply(ctx, ds, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"198.18.3.1/32", "198.18.3.2/32"} {
		if exp, ok := mem.get(p); !ok || !exp.IsZero() {
			t.Fatalf("%s: held %v with expiry %v, want no timeout", p, ok, exp)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := mem.get("198.18.3.3/32"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the timed ban never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// By now the timed decision on 198.18.3.2 has expired as well: the
	// pass that removed it leaves the address banned, still without a
	// timeout.
	time.Sleep(20 * time.Millisecond)
	for _, p := range []string{"198.18.3.1/32", "198.18.3.2/32"} {
		if exp, ok := mem.get(p); !ok || !exp.IsZero() {
			t.Errorf("%s after expiry passes: held %v, expiry %v", p, ok, exp)
		}
	}
	if n := r.Stats().Entries; n != 2 {
		t.Errorf("entries = %d, want the 2 forever bans", n)
	}
}
