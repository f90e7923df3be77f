package keytab

import (
	"math/rand/v2"
	"testing"
)

// TestMapAgainstGoMap runs random puts and deletes on a Map and a Go map
// and compares them after every step, over key sets that grow, shrink and
// include key 0, which has no slot.
func TestMapAgainstGoMap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keys   uint64 // keys drawn from [0, keys)
		ops    int
		putPct int
	}{
		{"tiny", 4, 2_000, 60},
		{"grow", 50_000, 100_000, 90},
		{"churn", 3_000, 100_000, 50},
		{"drain", 20_000, 100_000, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.ops)))
			m, ref := New[int64](), map[uint64]int64{}
			for i := range tc.ops {
				k := rng.Uint64N(tc.keys)
				if rng.IntN(100) < tc.putPct {
					m.Put(k, int64(i))
					ref[k] = int64(i)
				} else {
					_, want := ref[k]
					delete(ref, k)
					if got := m.Delete(k); got != want {
						t.Fatalf("op %d: Delete(%d) = %v, want %v", i, k, got, want)
					}
				}
				want, in := ref[k]
				if got, ok := m.Get(k); got != want || ok != in {
					t.Fatalf("op %d: Get(%d) = %d, %v; want %d, %v", i, k, got, ok, want, in)
				}
				if m.Len() != len(ref) {
					t.Fatalf("op %d: Len %d, want %d", i, m.Len(), len(ref))
				}
			}
			seen := 0
			for k, v := range m.All() {
				if w, ok := ref[k]; !ok || w != v {
					t.Fatalf("All yields %d: %d, want %d (present %v)", k, v, w, ok)
				}
				seen++
			}
			if seen != len(ref) {
				t.Fatalf("All yields %d entries, want %d", seen, len(ref))
			}
			for k, v := range ref {
				if got, ok := m.Get(k); !ok || got != v {
					t.Fatalf("Get(%d) = %d, %v; want %d", k, got, ok, v)
				}
			}
		})
	}
}

// TestMapBytes holds a million entries to their bound: 16-byte entries in
// slots at least 65 % full, against 28-35 MB in a Go map.
func TestMapBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: fills a million entries")
	}
	const n = 1_000_000
	m := New[int64]()
	for i := range uint64(n) {
		m.Put(i<<8|32, int64(i))
	}
	if got, max := m.Bytes(), n*16*100/65; got > max {
		t.Errorf("a million entries take %d bytes, want at most %d", got, max)
	}
	for i := range uint64(n) {
		m.Delete(i<<8 | 32)
	}
	if got := m.Bytes(); got != 0 {
		t.Errorf("an emptied map keeps %d bytes, want 0", got)
	}
}

func BenchmarkMapGet1M(b *testing.B) {
	const n = 1_000_000
	m := New[[2]int64]()
	for i := range uint64(n) {
		m.Put(i<<8|32, [2]int64{int64(i)})
	}
	i := uint64(0)
	for b.Loop() {
		if _, ok := m.Get((i%n)<<8 | 32); !ok {
			b.Fatal("missing")
		}
		i += 7919
	}
}
