package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// awaitBanned waits (30 s at most) until every attacker written is banned
// in the store and the kernel, and returns those that are not.
func (s *soakEnv) awaitBanned(written []netip.Addr) []netip.Addr {
	var unbanned []netip.Addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, kern := s.stored(), s.kernel()
		unbanned = unbanned[:0]
		for _, a := range written {
			if _, ok := stored[a]; !ok || !kern[a] {
				unbanned = append(unbanned, a)
			}
		}
		if len(unbanned) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return unbanned
}

// checkExactlyOnce: every attacker written is banned, by one decision,
// a first-offence ssh-bf ban, and no other address is.
func (s *soakEnv) checkExactlyOnce(written []netip.Addr, rows []decRow, unbanned []netip.Addr) {
	t := s.t
	per := map[netip.Addr][]decRow{}
	for _, r := range rows {
		per[r.addr] = append(per[r.addr], r)
	}
	isAttacker := map[netip.Addr]bool{}
	for _, a := range written {
		isAttacker[a] = true
	}
	var dup, wrongDur, stray []string
	for a, rs := range per {
		if !isAttacker[a] {
			for _, r := range rs {
				stray = append(stray, fmt.Sprintf("%s %s %v deleted=%v", a, r.scenario, r.until.Sub(r.created).Round(time.Minute), r.deleted))
			}
			continue
		}
		if len(rs) > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", a, len(rs)))
		}
		for _, r := range rs {
			if d := r.until.Sub(r.created); d < firstOffence-time.Minute || d > firstOffence+time.Minute || r.scenario != "moat/ssh-bf" {
				wrongDur = append(wrongDur, fmt.Sprintf("%s %s %v", a, r.scenario, d.Round(time.Minute)))
			}
		}
	}
	if len(unbanned) > 0 {
		t.Errorf("soak: %d of %d attackers written are not banned (store and kernel): %v", len(unbanned), len(written), unbanned)
		s.explainMissed(unbanned)
	}
	if len(dup) > 0 {
		t.Errorf("soak: %d attackers have more than one decision: %v", len(dup), dup)
	}
	if len(wrongDur) > 0 {
		t.Errorf("soak: %d decisions are not a first-offence ssh-bf ban (%v): %v", len(wrongDur), firstOffence, wrongDur)
	}
	if len(stray) > 0 {
		t.Errorf("soak: addresses that never attacked were banned: %v", stray)
	}
}

// checkProbes: no probe from a banned address arrived, and the free
// address's did, so the path the probes take works.
func (s *soakEnv) checkProbes() {
	t := s.t
	var leakers []string
	s.leakedFrom.Range(func(k, v any) bool {
		leakers = append(leakers, fmt.Sprintf("%s:%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	if n := s.leaked.Load(); n > 0 {
		t.Errorf("soak: %d probes from banned addresses arrived: %v", n, leakers)
	}
	if s.freeArrive.Load() == 0 {
		t.Errorf("soak: no probe from the free address arrived: the probe path is broken, the leak count means nothing")
	}
}

// watchBans turns addresses that appear in the kernel sets into probe
// sources; from then on no packet of theirs may arrive.
func (s *soakEnv) watchBans(ctx context.Context) {
	for ctx.Err() == nil {
		for a := range s.kernel() {
			s.mu.Lock()
			isNew := !s.banned[a]
			s.banned[a] = true
			s.mu.Unlock()
			if isNew {
				select {
				case s.probeAdd <- a:
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kernel returns the single addresses in the nft sets ban4 and ban6.
func (s *soakEnv) kernel() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, set := range []string{"ban4", "ban6"} {
		b, err := s.victim.Command("nft", "list", "set", "inet", "moat", set).CombinedOutput()
		if err != nil {
			continue // the table is made at the first start
		}
		for _, f := range strings.FieldsFunc(string(b), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '{' || r == '}' }) {
			if a, err := netip.ParseAddr(f); err == nil {
				out[a] = true
			}
		}
	}
	return out
}

type decRow struct {
	addr           netip.Addr
	scenario       string
	created, until time.Time
	deleted        bool
}

// decisions reads every decision row from the store, read-only, beside a
// running daemon (SQLite WAL lets readers in during its writes).
func (s *soakEnv) decisions() []decRow {
	if _, err := os.Stat(s.dbPath); err != nil {
		return nil
	}
	db, err := sql.Open("sqlite3", "file:"+s.dbPath+"?mode=ro&_busy_timeout=5000")
	must(s.t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT value, scenario, created_at, until, deleted_at IS NOT NULL FROM decisions`)
	if err != nil {
		s.t.Fatalf("soak: read the store: %v", err)
	}
	defer rows.Close()
	var out []decRow
	for rows.Next() {
		var v string
		var r decRow
		var created, until int64
		must(s.t, rows.Scan(&v, &r.scenario, &created, &until, &r.deleted))
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, err2 := netip.ParseAddr(v)
			if err2 != nil {
				s.t.Fatalf("soak: stored value %q: %v", v, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.addr = p.Addr()
		r.created, r.until = time.Unix(0, created), time.Unix(0, until)
		out = append(out, r)
	}
	must(s.t, rows.Err())
	return out
}

// stored returns the addresses with an active decision in the store.
func (s *soakEnv) stored() map[netip.Addr]decRow {
	out := map[netip.Addr]decRow{}
	for _, r := range s.decisions() {
		if !r.deleted {
			out[r.addr] = r
		}
	}
	return out
}

// explainMissed logs, for each attacker not banned, where its lines are,
// so a miss can be told from a line never written.
func (s *soakEnv) explainMissed(missed []netip.Addr) {
	for _, a := range missed {
		var where []string
		for _, p := range []string{s.logPath, s.logPath + ".1", s.logPath + ".2"} {
			b, _ := os.ReadFile(p)
			if n := strings.Count(string(b), "from "+a.String()+" port"); n > 0 {
				where = append(where, fmt.Sprintf("%s:%d", filepath.Base(p), n))
			}
		}
		s.t.Logf("soak: missed %s: lines in %v (none listed: sent to journald)", a, where)
	}
}

// pct is the p-th percentile of ds, to the millisecond.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i].Round(time.Millisecond)
}
