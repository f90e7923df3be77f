package scenario

import (
	"slices"
	"time"
)

// table is the buckets of one scenario (or of the scenarios sharing them),
// capped at an equal share of Options.MaxBuckets so that a flood filling
// one scenario's table cannot evict another's buckets.
//
// At the cap, a new partition takes the place of a bucket that holds
// nothing worth keeping (a blackhole record, a leaky bucket that leaked
// empty). When every bucket sampled still counts something, a leaky
// scenario's new partition goes to the table's sketch instead: the table
// is degraded. The sketch sees each event of every partition without a
// bucket, and a partition whose estimated level reaches half the capacity
// is promoted: it takes the place of the sampled bucket farthest from
// overflowing, whose level goes back into the sketch, and starts from the
// lower bound the sketch holds of its own level. Other kinds of scenario
// (counters, conditions, bayesian, tables two scenarios share) evict the
// bucket farthest from its end, as a flood would otherwise leave them.
type table struct {
	buckets map[string]*bucket
	// list holds the buckets in no order, for sampling victims.
	list  []*bucket
	cap   int
	users []*scenario
	// sketchFor is the leaky scenario the sketch counts for; nil when the
	// table only evicts.
	sketchFor *scenario
	sk        *sketch

	degraded     bool
	degradations uint64 // times the table became degraded
	recoveries   uint64
	sketchPours  uint64 // events counted by the sketch only
	promotions   uint64 // partitions promoted from the sketch to a bucket
	lostBefore   uint64 // sketch.steals of the sketches dropped at recovery
}

func (tab *table) sketchLost() uint64 {
	if tab.sk == nil {
		return tab.lostBefore
	}
	return tab.lostBefore + tab.sk.steals
}

// victimSamples is how many buckets an eviction compares: the least full
// of 8 random buckets is, in a table of any size, among the least full
// eighth with probability 1-(7/8)^8 = 66%, and costs no index.
const victimSamples = 8

func (s *Set) insert(tab *table, b *bucket) {
	tab.buckets[b.key] = b
	b.tabIdx = len(tab.list)
	tab.list = append(tab.list, b)
	s.buckets++
	b.sc.stats.Buckets++
}

// victim samples the table for the bucket least worth keeping at t:
// blackhole records first, then the leaky bucket farthest from
// overflowing (a leaked-empty one is worth nothing), then the live
// bucket nearest its end.
func (s *Set) victim(tab *table, t time.Time) (*bucket, time.Duration) {
	var best *bucket
	var bestLevel time.Duration
	for range victimSamples {
		b := tab.list[s.rng.IntN(len(tab.list))]
		lv := worth(b, t)
		if best == nil || lv < bestLevel || lv == bestLevel && b.deadline.Before(best.deadline) {
			best, bestLevel = b, lv
		}
	}
	return best, bestLevel
}

// worth orders buckets for eviction: -1 for a blackhole record, the level
// of a leaky bucket, and a full room for other live buckets, which have
// no level to compare.
func worth(b *bucket, t time.Time) time.Duration {
	switch {
	case !b.live:
		return -1
	case b.sc.kind == kindLeaky:
		return b.level(t)
	default:
		return b.sc.room + 1
	}
}

// makeRoom is called for a new partition of a full table. It returns true
// when the partition gets a bucket, with the level to seed it with; false
// when the sketch counted the event instead.
func (s *Set) makeRoom(tab *table, key string, t time.Time) (time.Duration, bool) {
	v, lv := s.victim(tab, t)
	if lv <= 0 || tab.sketchFor == nil {
		s.evictBucket(v)
		if tab.sk != nil {
			return s.unsketch(tab, key, t), true
		}
		return 0, true
	}
	sc := tab.sketchFor
	if tab.sk == nil {
		tab.sk = newSketch(s.seed, s.sketchLevels)
	}
	k := tab.sk.key(key)
	tn := t.UnixNano()
	est := tab.sk.estimate(k, tn, sc.leakspeed)
	// Promote at half the room, and a key this event overflows whatever
	// the victim holds: what the key poured before counts through the
	// seed, and a one-event flood key stays in the sketch.
	heavy := est >= max(sc.room/2, sc.leakspeed*2) && est > lv
	if heavy || tab.sk.lower(k, tn) > sc.room-sc.leakspeed {
		s.foldEvict(tab, v, t)
		tab.promotions++
		return s.unsketch(tab, key, t), true
	}
	tab.sk.add(k, tn, sc.leakspeed)
	tab.sketchPours++
	sc.stats.Pours++
	if !tab.degraded {
		tab.degraded = true
		tab.degradations++
		s.degraded++
	}
	return 0, false
}

// unsketch returns the level to seed a new bucket of key with, the lower
// bound the sketch holds, and drops the key's records there.
func (s *Set) unsketch(tab *table, key string, t time.Time) time.Duration {
	k := tab.sk.key(key)
	lv := tab.sk.lower(k, t.UnixNano())
	tab.sk.forget(k)
	sc := tab.sketchFor
	// A distinct or cancel_on scenario's level is not the events' count.
	if sc.distinct != nil || sc.cancelOn != nil {
		return 0
	}
	return lv
}

// foldEvict evicts a live leaky bucket into the sketch: its level stays
// counted, and owned, so that its partition can come back with it.
func (s *Set) foldEvict(tab *table, b *bucket, t time.Time) {
	if lv := b.level(t); lv > 0 && b.live {
		tab.sk.add(tab.sk.key(b.key), t.UnixNano(), lv)
	}
	s.evictBucket(b)
}

func (s *Set) evictBucket(b *bucket) {
	b.sc.stats.Evictions++
	s.evictions++
	b.end(s.drop)
	s.remove(b)
}

// seed starts a promoted bucket at the level the sketch knows it reached.
// Total_count counts those events too, though the alert only lists those
// the bucket kept.
func (b *bucket) seed(lv time.Duration) {
	lv = min(lv, b.sc.room)
	b.credit = b.sc.room - lv
	// A partly leaked event still was one.
	b.leaky.Total_count = int((lv + b.sc.leakspeed - 1) / b.sc.leakspeed)
}

// recoverCheck ends the degraded state of tables whose sketch has drained
// and which have room again: every source then has a bucket.
func (s *Set) recoverCheck(now time.Time) {
	if s.degraded == 0 || now.Before(s.checkAt) {
		return
	}
	s.checkAt = now.Add(time.Second)
	n := now.UnixNano()
	for _, tab := range s.tables {
		if !tab.degraded || len(tab.buckets) >= tab.cap || tab.sk.until > n {
			continue
		}
		tab.degraded = false
		tab.recoveries++
		s.degraded--
		// A drained sketch holds nothing: its memory goes back until the
		// next flood.
		tab.lostBefore += tab.sk.steals
		tab.sk = nil
	}
}

// Degraded names the scenarios whose table is degraded now, in load
// order: their new sources are counted by the sketch only.
func (s *Set) Degraded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.degraded == 0 {
		return nil
	}
	var out []string
	for _, sc := range s.scenarios {
		if sc.tab.degraded && !slices.Contains(out, sc.spec.Name) {
			out = append(out, sc.spec.Name)
		}
	}
	return out
}
