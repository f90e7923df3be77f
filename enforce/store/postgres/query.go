package postgres

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// params collects a query's arguments and numbers their placeholders.
type params []any

// add appends v and returns its placeholder.
func (p *params) add(v any) string {
	*p = append(*p, v)
	return "$" + strconv.Itoa(len(*p))
}

// bounds returns the first and last address of p as 16 bytes each:
// PostgreSQL compares BYTEA byte by byte, so they order as addresses.
func bounds(p netip.Prefix) ([]byte, []byte) {
	p = p.Masked()
	first := p.Addr().As16()
	last := first
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		last[i] |= byte(1<<n - 1)
		host -= n
	}
	return first[:], last[:]
}

// covering selects the decisions covering an address or range: the exact
// value through its index and the active ranges containing it through
// theirs, as the SQLite store does.
func covering(p *params, value string, first, last []byte) string {
	return `id IN (SELECT id FROM decisions WHERE value = ` + p.add(value) + `
	UNION ALL SELECT id FROM decisions WHERE deleted_at IS NULL AND scope = 'Range' AND start_ip <= ` + p.add(first) + ` AND end_ip >= ` + p.add(last) + `)`
}

// where is the condition f selects decisions by, the SQLite store's
// Filter semantics in PostgreSQL's dialect.
func where(f store.Filter, now time.Time, p *params) string {
	var conds []string
	if !f.History {
		conds = append(conds, `deleted_at IS NULL AND (until = 0 OR until > `+p.add(now.UnixNano())+`)`)
	}
	if f.ID != 0 {
		conds = append(conds, `id = `+p.add(f.ID))
	}
	if f.IP.IsValid() {
		a := f.IP.Unmap()
		b, _ := bounds(netip.PrefixFrom(a, a.BitLen()))
		conds = append(conds, covering(p, a.String(), b, b))
	}
	if f.Range.IsValid() {
		r := model.Canonical(f.Range)
		first, last := bounds(r)
		conds = append(conds, covering(p, model.ValueString(r), first, last))
	}
	if f.Value != "" {
		conds = append(conds, `value = `+p.add(f.Value))
	}
	if f.Scope != "" {
		conds = append(conds, `lower(scope) = lower(`+p.add(f.Scope)+`)`)
	}
	if f.Type != "" {
		conds = append(conds, `type = `+p.add(f.Type))
	}
	if f.Origin != "" {
		conds = append(conds, `origin = `+p.add(f.Origin))
	}
	if f.Scenario != "" {
		conds = append(conds, `strpos(scenario, `+p.add(f.Scenario)+`) > 0`)
	}
	if !f.Since.IsZero() {
		conds = append(conds, `created_at >= `+p.add(f.Since.UnixNano()))
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " AND ")
}

const recordCols = `id, coalesce(alert_id, 0), value, type, origin, scenario, reason, simulated, created_at, until, coalesce(deleted_at, 0), ports, protocol`

type scanner interface{ Scan(...any) error }

func scanRecord(sc scanner) (store.Record, error) {
	var r store.Record
	var value, origin, ports string
	var created, until, deleted int64
	if err := sc.Scan(&r.ID, &r.AlertID, &value, &r.Type, &origin, &r.Scenario, &r.Reason, &r.Simulated, &created, &until, &deleted, &ports, &r.Protocol); err != nil {
		return store.Record{}, err
	}
	v, geo, err := model.ParseDecisionValue(value)
	if err != nil {
		return store.Record{}, fmt.Errorf("decision %d: bad stored value %q: %w", r.ID, value, err)
	}
	if ports != "" {
		if r.Ports, err = model.ParsePorts(ports); err != nil {
			return store.Record{}, fmt.Errorf("decision %d: bad stored ports: %w", r.ID, err)
		}
	}
	r.Value, r.Geo, r.Origin = v, geo, model.Origin(origin)
	r.Created, r.Until, r.Deleted = fromNanos(created), fromNanos(until), fromNanos(deleted)
	return r, nil
}
