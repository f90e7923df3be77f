package store

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// Filter selects decisions. Zero fields match everything.
type Filter struct {
	ID int64
	// IP matches decisions whose value contains the address.
	IP netip.Addr
	// Range matches decisions whose value contains the whole range.
	Range netip.Prefix
	// Value matches the stored value exactly (an address or a CIDR).
	Value string
	// Scope matches case-insensitively ("ip", "Range").
	Scope    string
	Type     string
	Origin   string
	Scenario string // substring
	// Since matches decisions created at or after it.
	Since time.Time
	// History includes deleted and expired decisions.
	History bool
	// Limit caps the result (newest first); 0 means no cap.
	Limit int
}

// Empty reports whether f selects everything.
func (f Filter) Empty() bool {
	return f.ID == 0 && !f.IP.IsValid() && !f.Range.IsValid() && f.Value == "" && f.Scope == "" && f.Type == "" && f.Origin == "" && f.Scenario == ""
}

// coveringIDs selects the decisions covering an address or range: the
// exact value through its index, and the active ranges containing it through
// theirs. Written as two subqueries because SQLite would not use both
// indexes for an OR and would scan every active decision instead.
const coveringIDs = `id IN (SELECT id FROM decisions WHERE value = ?
	UNION ALL SELECT id FROM decisions WHERE deleted_at IS NULL AND scope = 'Range' AND start_ip <= ? AND end_ip >= ?)`

func (f Filter) where(now time.Time) (string, []any) {
	var conds []string
	var args []any
	if !f.History {
		conds = append(conds, `deleted_at IS NULL AND (until = 0 OR until > ?)`)
		args = append(args, now.UnixNano())
	}
	if f.ID != 0 {
		conds = append(conds, `id = ?`)
		args = append(args, f.ID)
	}
	if f.IP.IsValid() {
		// A single address matches by value (index), ranges by bounds
		// (a small partial index).
		a := f.IP.Unmap()
		b, _ := bounds(netip.PrefixFrom(a, a.BitLen()))
		conds = append(conds, coveringIDs)
		args = append(args, a.String(), b, b)
	}
	if f.Range.IsValid() {
		p := model.Canonical(f.Range)
		first, last := bounds(p)
		conds = append(conds, coveringIDs)
		args = append(args, model.ValueString(p), first, last)
	}
	if f.Value != "" {
		conds = append(conds, `value = ?`)
		args = append(args, f.Value)
	}
	if f.Scope != "" {
		conds = append(conds, `scope = ? COLLATE NOCASE`)
		args = append(args, f.Scope)
	}
	if f.Type != "" {
		conds = append(conds, `type = ?`)
		args = append(args, f.Type)
	}
	if f.Origin != "" {
		conds = append(conds, `origin = ?`)
		args = append(args, f.Origin)
	}
	if f.Scenario != "" {
		conds = append(conds, `instr(scenario, ?) > 0`)
		args = append(args, f.Scenario)
	}
	if !f.Since.IsZero() {
		conds = append(conds, `created_at >= ?`)
		args = append(args, f.Since.UnixNano())
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

const recordCols = `id, coalesce(alert_id, 0), value, type, origin, scenario, reason, simulated, created_at, until, coalesce(deleted_at, 0), ports, protocol`

type scanner interface{ Scan(...any) error }

func scanRecord(sc scanner) (Record, error) {
	var r Record
	var value, origin, ports string
	var created, until, deleted int64
	if err := sc.Scan(&r.ID, &r.AlertID, &value, &r.Type, &origin, &r.Scenario, &r.Reason, &r.Simulated, &created, &until, &deleted, &ports, &r.Protocol); err != nil {
		return Record{}, err
	}
	p, geo, err := model.ParseDecisionValue(value)
	if err != nil {
		return Record{}, fmt.Errorf("decision %d: bad stored value %q: %w", r.ID, value, err)
	}
	if ports != "" {
		if r.Ports, err = model.ParsePorts(ports); err != nil {
			return Record{}, fmt.Errorf("decision %d: bad stored ports: %w", r.ID, err)
		}
	}
	r.Value, r.Geo = p, geo
	r.Origin = model.Origin(origin)
	r.Created, r.Until, r.Deleted = fromNanos(created), fromNanos(until), fromNanos(deleted)
	return r, nil
}

// ListDecisions returns the decisions f selects, newest first.
func (s *Store) ListDecisions(ctx context.Context, f Filter) ([]Record, error) {
	where, args := f.where(time.Now())
	q := `SELECT ` + recordCols + ` FROM decisions WHERE ` + where + ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("list decisions: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	return out, nil
}

// Active returns every decision in force at now, simulated ones included.
func (s *Store) Active(ctx context.Context, now time.Time) ([]model.Decision, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordCols+` FROM decisions WHERE deleted_at IS NULL AND (until = 0 OR until > ?) ORDER BY id`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("active decisions: %w", err)
	}
	defer rows.Close()
	var out []model.Decision
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("active decisions: %w", err)
		}
		out = append(out, r.Decision)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("active decisions: %w", err)
	}
	return out, nil
}
