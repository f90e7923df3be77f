package scenario

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestSketchBounds pours random streams of many keys into sketches far
// too small for them and checks, against each key's exact leaky level,
// that the estimate never falls below it (no attacker escapes promotion)
// and the level the sketch keeps is exact while its levels have room and
// never above the truth once they are full (no benign key is seeded with
// its neighbours' events).
func TestSketchBounds(t *testing.T) {
	cases := []struct {
		name        string
		keys, steps int
		leak        time.Duration
		maxLevels   int
		wantLost    bool
	}{
		{"sparse", 1000, 20000, 10 * time.Second, defaultMaxLevels, false},
		{"saturated cells", 1_000_000, 200_000, 60 * time.Second, defaultMaxLevels, false},
		{"few heavy", 50, 20000, 10 * time.Second, defaultMaxLevels, false},
		// 2,400 keys live at once against 768 slots' worth.
		{"levels full", 100_000, 200_000, 60 * time.Second, 1 << 10, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sk := newSketch(maphash.MakeSeed(), c.maxLevels)
			exact := map[string]int64{} // drain time of each key alone
			rng := rand.New(rand.NewPCG(5, 6))
			now := int64(0)
			for range c.steps {
				now += rng.Int64N(int64(50 * time.Millisecond))
				k := strconv.Itoa(rng.IntN(c.keys))
				exact[k] = max(exact[k], now) + int64(c.leak)
				key := sk.key(k)
				sk.add(key, now, c.leak)
				truth := time.Duration(exact[k] - now)
				if est := sk.estimate(key, now, 0); est < truth {
					t.Fatalf("estimate %v below the true level %v", est, truth)
				}
				lo := sk.lower(key, now)
				if lo > truth || sk.steals == 0 && lo != truth {
					t.Fatalf("kept level %v, true level %v, %d keys dropped", lo, truth, sk.steals)
				}
			}
			if c.wantLost != (sk.steals > 0) || len(sk.levels) > c.maxLevels {
				t.Errorf("%d keys dropped from %d slots (bound %d)", sk.steals, len(sk.levels), c.maxLevels)
			}
		})
	}
}

// TestDegradedAndRecovered fills a tiny table: the scenario is degraded
// while new sources go to the sketch, a source that keeps failing is
// promoted and overflows, and once the flood has leaked away the table
// recovers.
func TestDegradedAndRecovered(t *testing.T) {
	set, err := Load([]string{shippedSSH}, Options{MaxBuckets: 30, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	for i := range 100 {
		pourLikeEngine(set, sshEvent(benignAddr(i), "root", t0.Add(time.Duration(i)*10*time.Millisecond)))
	}
	if d := set.Degraded(); len(d) != 3 {
		t.Fatalf("degraded %v, want the three scenarios", d)
	}
	var caught bool
	for k := range 8 {
		for _, a := range pourLikeEngine(set, sshEvent("198.18.0.1", "root", t0.Add(time.Second+time.Duration(k)*time.Second))) {
			caught = caught || a.Scenario == "moat/ssh-bf" && a.Value == "198.18.0.1"
		}
	}
	if !caught {
		t.Error("a brute-forcer arriving in a full table was not caught")
	}
	st := set.Stats()
	if sc := st.Scenarios[0]; !sc.Degraded || sc.Degradations != 1 || sc.SketchPours == 0 || sc.MaxBuckets != 10 {
		t.Errorf("stats while degraded: %+v", sc)
	}
	set.Tick(t0.Add(time.Hour))
	if d := set.Degraded(); len(d) != 0 {
		t.Errorf("still degraded after an hour: %v", d)
	}
	if sc := set.Stats().Scenarios[0]; sc.Degraded || sc.Recoveries != 1 {
		t.Errorf("stats after recovery: %+v", sc)
	}
}
