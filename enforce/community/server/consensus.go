package server

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
)

// stats are the server's counters.
type stats struct {
	signals, dropped, canaries, limited, listed, delisted atomic.Int64
	tooLarge, pulls                                       atomic.Int64
}

// Stats is a snapshot of the counters.
type Stats struct {
	// Signals were stored as reports; Dropped were not addresses or not
	// Ip-scoped; Canaries were canary reports; Limited were refused by
	// a rate limit; Listed and Delisted count list changes.
	Signals, Dropped, Canaries, Limited, Listed, Delisted int64
	// TooLarge were refused in requests over MaxBatch; Pulls are the
	// pulls served.
	TooLarge, Pulls int64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Signals: s.stats.signals.Load(), Dropped: s.stats.dropped.Load(), Canaries: s.stats.canaries.Load(),
		Limited: s.stats.limited.Load(), Listed: s.stats.listed.Load(), Delisted: s.stats.delisted.Load(),
		TooLarge: s.stats.tooLarge.Load(), Pulls: s.stats.pulls.Load()}
}

// Counts are what the server holds now: enrolled reporters and the
// addresses listed (not delisted, not expired).
type Counts struct {
	Reporters, Listed int64
}

// Counts counts them in the database; the metrics read them at scrape
// time rather than keeping a copy that could drift.
func (s *Server) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	if err := s.db.QueryRowContext(ctx, s.db.q(`SELECT COUNT(*) FROM reporters WHERE enrolled = 1`)).Scan(&c.Reporters); err != nil {
		return c, fmt.Errorf("count reporters: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, s.db.q(`SELECT COUNT(*) FROM listed WHERE deleted = 0 AND expires_at >= ?`), s.cfg.Now().Unix()).Scan(&c.Listed); err != nil {
		return c, fmt.Errorf("count listed: %w", err)
	}
	return c, nil
}

// reporterInfo is what trust is computed from.
type reporterInfo struct {
	created  time.Time
	agreed   int64
	canaries int64
}

// trust is a reporter's weight in [0,1]: half for being enrolled, a
// quarter growing with age, a quarter growing with reports that the
// consensus later confirmed. A single canary report zeroes it: a
// reporter that lies once is not believed again (an operator deletes and
// re-admits it after fixing it).
func (s *Server) trust(r reporterInfo, now time.Time) float64 {
	if r.canaries > 0 {
		return 0
	}
	age := min(1, now.Sub(r.created).Seconds()/s.cfg.TrustAge.Seconds())
	agreed := min(1, float64(r.agreed)/float64(s.cfg.TrustAgreed))
	return 0.5 + 0.25*math.Max(0, age) + 0.25*agreed
}

// network is the reporter network an address counts toward: its /16 for
// IPv4 and its /32 for IPv6, as stand-ins for an autonomous system.
func network(a netip.Addr) string {
	a = a.Unmap()
	bits := 16
	if a.Is6() {
		bits = 32
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// canary reports whether no honest reporter could have seen a attack.
func (s *Server) canary(a netip.Addr) bool {
	for _, p := range s.canaries {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// support is what the reports of one address amount to.
type support struct {
	reports, reporters, trusted, networks int
	score                                 float64
	first, last                           time.Time
	scenario                              string
}

// support computes an address's support from its reports in the window.
func (s *Server) support(ctx context.Context, addr string, now time.Time) (support, error) {
	rows, err := s.db.QueryContext(ctx, s.db.q(`SELECT r.reporter, r.net, r.scenario, r.first_at, r.last_at, p.created_at, p.agreed, p.canaries, p.enrolled
		FROM reports r JOIN reporters p ON p.id = r.reporter
		WHERE r.addr = ? AND r.last_at >= ?`), addr, now.Add(-s.cfg.Window).Unix())
	if err != nil {
		return support{}, fmt.Errorf("support of %s: %w", addr, err)
	}
	defer rows.Close()
	var sp support
	weight := map[string]float64{}
	nets := map[string]bool{}
	scen := map[string]int{}
	for rows.Next() {
		var rep, net, sc string
		var first, last, created, agreed, canaries, enrolled int64
		if err := rows.Scan(&rep, &net, &sc, &first, &last, &created, &agreed, &canaries, &enrolled); err != nil {
			return support{}, fmt.Errorf("support of %s: %w", addr, err)
		}
		sp.reports++
		f, l := time.Unix(first, 0), time.Unix(last, 0)
		if sp.first.IsZero() || f.Before(sp.first) {
			sp.first = f
		}
		if l.After(sp.last) {
			sp.last = l
		}
		// An open server enrols at registration, so enrolled is the one
		// admission test for both modes.
		w := 0.0
		if enrolled == 1 {
			w = s.trust(reporterInfo{time.Unix(created, 0), agreed, canaries}, now)
		}
		if _, seen := weight[rep]; !seen {
			sp.reporters++
		}
		weight[rep] = max(weight[rep], w)
		if w > 0 {
			nets[net] = true
			scen[sc]++
		}
	}
	if err := rows.Err(); err != nil {
		return support{}, fmt.Errorf("support of %s: %w", addr, err)
	}
	for _, w := range weight {
		if w > 0 {
			sp.trusted++
			sp.score += w
		}
	}
	sp.networks = len(nets)
	best := 0
	for sc, n := range scen {
		if n > best || (n == best && sc < sp.scenario) {
			best, sp.scenario = n, sc
		}
	}
	return sp, nil
}

// meets reports whether sp is enough to list an address.
func (s *Server) meets(sp support) bool {
	return sp.trusted >= s.cfg.K && sp.networks >= s.cfg.MinNetworks && sp.score >= float64(s.cfg.K)*s.cfg.MinWeight-1e-9
}

// EvalResult says what one evaluation changed.
type EvalResult struct {
	Listed, Refreshed, Expired, Pruned int
}

// Evaluate applies the consensus rule at now: addresses whose support
// meets it are listed (or their expiry pushed back), listed addresses past
// their expiry are delisted (pulls then send them as deleted), and
// reports older than the window are pruned.
func (s *Server) Evaluate(ctx context.Context) (EvalResult, error) {
	now := s.cfg.Now()
	var res EvalResult
	cut := now.Add(-s.cfg.Window).Unix()
	r, err := s.db.ExecContext(ctx, s.db.q(`DELETE FROM reports WHERE last_at < ?`), cut)
	if err != nil {
		return res, fmt.Errorf("evaluate: prune: %w", err)
	}
	n, _ := r.RowsAffected()
	res.Pruned = int(n)
	// Only addresses with enough distinct reporters and networks before
	// trust is weighed, and of those only the ones not listed yet or
	// whose expiry the last reports would push back by more than a
	// quarter TTL (list's refresh rule): the query keeps a flood of
	// single-reporter addresses, and a steady list, out of the
	// per-address work.
	ttl := int64(s.cfg.TTL.Seconds())
	rows, err := s.db.QueryContext(ctx, s.db.q(`SELECT r.addr FROM reports r JOIN reporters p ON p.id = r.reporter
		LEFT JOIN listed l ON l.addr = r.addr
		WHERE r.last_at >= ? AND p.canaries = 0
		GROUP BY r.addr HAVING COUNT(DISTINCT r.reporter) >= ? AND COUNT(DISTINCT r.net) >= ?
		AND MAX(r.last_at) + ? - MAX(CASE WHEN l.deleted = 0 THEN l.expires_at ELSE 0 END) > ?`), cut, s.cfg.K, s.cfg.MinNetworks, ttl, ttl/4)
	if err != nil {
		return res, fmt.Errorf("evaluate: candidates: %w", err)
	}
	var cands []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return res, fmt.Errorf("evaluate: candidates: %w", err)
		}
		cands = append(cands, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("evaluate: candidates: %w", err)
	}
	for _, a := range cands {
		sp, err := s.support(ctx, a, now)
		if err != nil {
			return res, err
		}
		if !s.meets(sp) {
			continue
		}
		fresh, refreshed, err := s.list(ctx, a, sp, now)
		if err != nil {
			return res, err
		}
		if fresh {
			res.Listed++
		} else if refreshed {
			res.Refreshed++
		}
	}
	r, err = s.db.ExecContext(ctx, s.db.q(`UPDATE listed SET deleted = 1, changed_ms = ? WHERE deleted = 0 AND expires_at <= ?`), now.UnixMilli(), now.Unix())
	if err != nil {
		return res, fmt.Errorf("evaluate: expire: %w", err)
	}
	n, _ = r.RowsAffected()
	res.Expired = int(n)
	s.stats.delisted.Add(n)
	if _, err := s.db.ExecContext(ctx, s.db.q(`DELETE FROM reporters WHERE enrolled = 0 AND created_at < ?`), now.Add(-7*24*time.Hour).Unix()); err != nil {
		return res, fmt.Errorf("evaluate: forget unenrolled reporters: %w", err)
	}
	// Deleted entries are kept for a window so clients that pull
	// rarely still learn of them, then forgotten.
	if _, err := s.db.ExecContext(ctx, s.db.q(`DELETE FROM listed WHERE deleted = 1 AND changed_ms < ?`), now.Add(-7*24*time.Hour).UnixMilli()); err != nil {
		return res, fmt.Errorf("evaluate: forget delisted: %w", err)
	}
	return res, nil
}

// list lists addr or pushes its expiry back. A fresh listing credits the
// reporters with agreement; a refresh is re-sent to clients (as new) only
// when it moves the expiry by more than a quarter TTL, to bound churn.
func (s *Server) list(ctx context.Context, addr string, sp support, now time.Time) (fresh, refreshed bool, err error) {
	exp := sp.last.Add(s.cfg.TTL).Unix()
	var oldExp, deleted int64
	err = s.db.QueryRowContext(ctx, s.db.q(`SELECT expires_at, deleted FROM listed WHERE addr = ?`), addr).Scan(&oldExp, &deleted)
	switch {
	case err == sql.ErrNoRows || (err == nil && deleted == 1):
		_, err = s.db.ExecContext(ctx, s.db.q(`INSERT INTO listed (addr, scenario, score, listed_at, expires_at, deleted, changed_ms) VALUES (?, ?, ?, ?, ?, 0, ?)
			ON CONFLICT (addr) DO UPDATE SET scenario = excluded.scenario, score = excluded.score, listed_at = excluded.listed_at, expires_at = excluded.expires_at, deleted = 0, changed_ms = excluded.changed_ms`),
			addr, sp.scenario, sp.score, now.Unix(), exp, now.UnixMilli())
		if err != nil {
			return false, false, fmt.Errorf("list %s: %w", addr, err)
		}
		if _, err := s.db.ExecContext(ctx, s.db.q(`UPDATE reporters SET agreed = agreed + 1 WHERE id IN (SELECT DISTINCT reporter FROM reports WHERE addr = ? AND last_at >= ?)`), addr, now.Add(-s.cfg.Window).Unix()); err != nil {
			return false, false, fmt.Errorf("list %s: credit reporters: %w", addr, err)
		}
		s.stats.listed.Add(1)
		return true, false, nil
	case err != nil:
		return false, false, fmt.Errorf("list %s: %w", addr, err)
	}
	if exp-oldExp <= int64(s.cfg.TTL.Seconds()/4) {
		_, err = s.db.ExecContext(ctx, s.db.q(`UPDATE listed SET score = ? WHERE addr = ?`), sp.score, addr)
		return false, false, wrap(err, "list "+addr)
	}
	_, err = s.db.ExecContext(ctx, s.db.q(`UPDATE listed SET score = ?, scenario = ?, expires_at = ?, changed_ms = ? WHERE addr = ?`), sp.score, sp.scenario, exp, now.UnixMilli(), addr)
	return false, err == nil, wrap(err, "list "+addr)
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Explanation says why an address is or is not listed, in counts only:
// it never names a reporter.
type Explanation struct {
	Addr             string    `json:"addr"`
	Listed           bool      `json:"listed"`
	Delisted         bool      `json:"delisted,omitempty"`
	Scenario         string    `json:"scenario,omitempty"`
	ListedAt         time.Time `json:"listed_at,omitzero"`
	ExpiresAt        time.Time `json:"expires_at,omitzero"`
	Reports          int       `json:"reports"`
	Reporters        int       `json:"reporters"`
	TrustedReporters int       `json:"trusted_reporters"`
	Networks         int       `json:"networks"`
	Score            float64   `json:"score"`
	FirstSeen        time.Time `json:"first_seen,omitzero"`
	LastSeen         time.Time `json:"last_seen,omitzero"`
	Reasons          []string  `json:"reasons"`
}

// Explain says why addr is (not) listed at the server's clock.
func (s *Server) Explain(ctx context.Context, addr netip.Addr) (Explanation, error) {
	now := s.cfg.Now()
	a := addr.Unmap().String()
	sp, err := s.support(ctx, a, now)
	if err != nil {
		return Explanation{}, err
	}
	e := Explanation{Addr: a, Reports: sp.reports, Reporters: sp.reporters, TrustedReporters: sp.trusted, Networks: sp.networks,
		Score: math.Round(sp.score*100) / 100, FirstSeen: sp.first, LastSeen: sp.last}
	var scen string
	var listedAt, exp, deleted int64
	err = s.db.QueryRowContext(ctx, s.db.q(`SELECT scenario, listed_at, expires_at, deleted FROM listed WHERE addr = ?`), a).Scan(&scen, &listedAt, &exp, &deleted)
	if err != nil && err != sql.ErrNoRows {
		return e, fmt.Errorf("explain %s: %w", a, err)
	}
	if err == nil {
		e.Scenario, e.ListedAt, e.ExpiresAt = scen, time.Unix(listedAt, 0), time.Unix(exp, 0)
		e.Listed, e.Delisted = deleted == 0, deleted == 1
	}
	k := s.cfg.K
	switch {
	case !addr.IsValid():
	case s.canary(addr.Unmap()) || !wire.Public(addr):
		e.Reasons = append(e.Reasons, "a canary address (reserved, allowlisted or configured): never listed, and reporting it collapses a reporter's trust")
	}
	if sp.trusted < k {
		e.Reasons = append(e.Reasons, fmt.Sprintf("%d trusted reporters in the last %s, %d needed", sp.trusted, s.cfg.Window, k))
	}
	if sp.networks < s.cfg.MinNetworks {
		e.Reasons = append(e.Reasons, fmt.Sprintf("reports from %d networks, %d needed", sp.networks, s.cfg.MinNetworks))
	}
	if need := float64(k) * s.cfg.MinWeight; sp.score < need-1e-9 {
		e.Reasons = append(e.Reasons, fmt.Sprintf("trust-weighted score %.2f, %.2f needed", sp.score, need))
	}
	if s.meets(sp) && !e.Listed {
		e.Reasons = append(e.Reasons, "meets the rule: listed at the next evaluation")
	}
	if e.Listed {
		e.Reasons = append(e.Reasons, "listed until "+e.ExpiresAt.UTC().Format(time.RFC3339)+" unless reports continue")
	}
	if e.Delisted {
		e.Reasons = append(e.Reasons, "was listed; its reports aged out and pulls send it as deleted")
	}
	return e, nil
}
