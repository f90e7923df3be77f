package server

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
)

var sqlNoRows = sql.ErrNoRows

// signalIn is the part of a signal the server reads; everything else a
// CrowdSec agent sends (message, context, decisions, machine_id) is
// decoded past and never stored.
type signalIn struct {
	Scenario string `json:"scenario"`
	Source   *struct {
		Scope string `json:"scope"`
		Value string `json:"value"`
		IP    string `json:"ip"`
	} `json:"source"`
}

// Report is one address reported for a scenario.
type Report struct {
	Addr     netip.Addr
	Scenario string
}

func (s *Server) signals(w http.ResponseWriter, r *http.Request, id string) error {
	var in []signalIn
	if err := decode(r, &in); err != nil {
		return err
	}
	if len(in) > s.cfg.MaxBatch {
		s.stats.tooLarge.Add(int64(len(in)))
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("%d signals in one request, at most %d", len(in), s.cfg.MaxBatch)}
	}
	if !s.byRep.allow(id, len(in), s.cfg.Now()) {
		s.stats.limited.Add(int64(len(in)))
		return errLimited
	}
	reps := make([]Report, 0, len(in))
	for _, sg := range in {
		if sg.Source == nil || !strings.EqualFold(sg.Source.Scope, "ip") || sg.Scenario == "" || len(sg.Scenario) > 256 {
			s.stats.dropped.Add(1)
			continue
		}
		v := sg.Source.Value
		if v == "" {
			v = sg.Source.IP
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			s.stats.dropped.Add(1)
			continue
		}
		reps = append(reps, Report{a, sg.Scenario})
	}
	if err := s.Ingest(r.Context(), id, s.clientIP(r), reps); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "OK")
	return nil
}

// Ingest stores a reporter's reports, made from the address from, in one
// transaction. Canary addresses are not stored: each one counts against
// the reporter, whose trust then collapses.
func (s *Server) Ingest(ctx context.Context, reporter string, from netip.Addr, reps []Report) error {
	now := s.cfg.Now().Unix()
	net := network(from)
	// Canaries out, duplicates folded (one statement may not touch a row
	// twice in PostgreSQL), then multi-row inserts: a round trip per
	// signal is what a remote database cannot afford.
	type key struct{ addr, scenario string }
	var rows []key
	seen := make(map[key]bool, len(reps))
	var canaries int64
	for _, rp := range reps {
		a := rp.Addr.Unmap()
		if !wire.Public(a) || s.canary(a) {
			canaries++
			continue
		}
		k := key{a.String(), rp.Scenario}
		if !seen[k] {
			seen[k] = true
			rows = append(rows, k)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ingest from %s: %w", reporter, err)
	}
	defer tx.Rollback()
	const chunk = 200
	for len(rows) > 0 {
		n := min(chunk, len(rows))
		var q strings.Builder
		q.WriteString(`INSERT INTO reports (addr, scenario, reporter, net, first_at, last_at) VALUES `)
		args := make([]any, 0, 6*n)
		for i, k := range rows[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?)")
			args = append(args, k.addr, k.scenario, reporter, net, now, now)
		}
		q.WriteString(` ON CONFLICT (addr, scenario, reporter) DO UPDATE SET last_at = excluded.last_at, net = excluded.net`)
		if _, err := tx.ExecContext(ctx, s.db.q(q.String()), args...); err != nil {
			return fmt.Errorf("ingest from %s: %w", reporter, err)
		}
		rows = rows[n:]
	}
	if canaries > 0 {
		if _, err := tx.ExecContext(ctx, s.db.q(`UPDATE reporters SET canaries = canaries + ? WHERE id = ?`), canaries, reporter); err != nil {
			return fmt.Errorf("ingest from %s: %w", reporter, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ingest from %s: %w", reporter, err)
	}
	s.stats.signals.Add(int64(len(reps)) - canaries)
	s.stats.canaries.Add(canaries)
	return nil
}

// Entry is a published address.
type Entry struct {
	Addr     string
	Scenario string
	Expires  time.Time
}

// Pull returns what reporter id pulls: the whole list when startup (or on
// its first pull), else what changed since its last pull; both filtered to
// the scenarios it sent at login and capped at MaxList.
func (s *Server) Pull(ctx context.Context, id string, startup bool) (added, deleted []Entry, err error) {
	now := s.cfg.Now()
	var scen string
	var cursor int64
	if err := s.db.QueryRowContext(ctx, s.db.q(`SELECT scenarios, pull_cursor_ms FROM reporters WHERE id = ?`), id).Scan(&scen, &cursor); err != nil {
		return nil, nil, fmt.Errorf("pull for %s: %w", id, err)
	}
	// A reporter that named no scenario at login gets the whole list:
	// a CrowdSec local API logs in before any of its agents told it what
	// they run, and the filter is for relevance, not secrecy (every
	// enrolled reporter may pull every scenario).
	var want map[string]bool
	if scen != "" {
		want = map[string]bool{}
		for _, sc := range strings.Split(scen, "\n") {
			want[sc] = true
		}
	}
	if startup {
		cursor = 0
	}
	// Rows changed at the same millisecond as this pull are sent again
	// next time rather than missed: adds and deletes are idempotent.
	rows, err := s.db.QueryContext(ctx, s.db.q(`SELECT addr, scenario, expires_at, deleted FROM listed WHERE changed_ms >= ? AND (deleted = 0 OR ? = 1) ORDER BY deleted, score DESC, addr`), cursor, b2i(cursor > 0))
	if err != nil {
		return nil, nil, fmt.Errorf("pull for %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var exp, del int64
		if err := rows.Scan(&e.Addr, &e.Scenario, &exp, &del); err != nil {
			return nil, nil, fmt.Errorf("pull for %s: %w", id, err)
		}
		e.Expires = time.Unix(exp, 0)
		switch {
		case want != nil && !want[e.Scenario]:
		case del == 1 && len(deleted) < s.cfg.MaxList:
			deleted = append(deleted, e)
		case del == 0 && !e.Expires.Before(now) && len(added) < s.cfg.MaxList:
			added = append(added, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("pull for %s: %w", id, err)
	}
	if _, err := s.db.ExecContext(ctx, s.db.q(`UPDATE reporters SET pull_cursor_ms = ? WHERE id = ?`), now.UnixMilli(), id); err != nil {
		return nil, nil, fmt.Errorf("pull for %s: %w", id, err)
	}
	s.stats.pulls.Add(1)
	return added, deleted, nil
}

func duration(until, now time.Time) string {
	return max(time.Second, until.Sub(now).Truncate(time.Second)).String()
}

func (s *Server) streamV3(w http.ResponseWriter, r *http.Request, id string) error {
	added, deleted, err := s.Pull(r.Context(), id, r.URL.Query().Get("startup") == "true")
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	out := wire.StreamV3{New: []wire.NewGroup{}, Deleted: []wire.DeletedGroup{}, Links: wire.Links{Blocklists: []any{}}}
	groups := map[string]int{}
	for _, e := range added {
		i, ok := groups[e.Scenario]
		if !ok {
			i = len(out.New)
			groups[e.Scenario] = i
			out.New = append(out.New, wire.NewGroup{Scenario: e.Scenario, Scope: "ip"})
		}
		out.New[i].Decisions = append(out.New[i].Decisions, wire.NewDecision{Value: e.Addr, Duration: duration(e.Expires, now)})
	}
	if len(deleted) > 0 {
		g := wire.DeletedGroup{Scope: "ip"}
		for _, e := range deleted {
			g.Decisions = append(g.Decisions, e.Addr)
		}
		out.Deleted = append(out.Deleted, g)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) streamV2(w http.ResponseWriter, r *http.Request, id string) error {
	added, deleted, err := s.Pull(r.Context(), id, r.URL.Query().Get("startup") == "true")
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	conv := func(es []Entry, dur bool) []wire.DecisionV2 {
		out := make([]wire.DecisionV2, 0, len(es))
		for _, e := range es {
			d := wire.DecisionV2{Duration: "1s", Origin: "CAPI", Scenario: e.Scenario, Scope: "Ip", Type: "ban", Value: e.Addr}
			if dur {
				d.Duration = duration(e.Expires, now)
			}
			out = append(out, d)
		}
		return out
	}
	writeJSON(w, http.StatusOK, wire.StreamV2{New: conv(added, true), Deleted: conv(deleted, false)})
	return nil
}
