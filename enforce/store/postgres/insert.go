package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// AlertBatch is one alert and the decisions it produced, for InsertAlerts.
type AlertBatch struct {
	Alert     model.Alert
	Decisions []model.Decision
}

// insertSQL stores alerts and decisions in one statement, so the sequence
// row is locked for one round trip, not four: src numbers the alerts and
// draws their IDs (materialized, so each draws once), the decisions find
// their alert's ID by the alert's ordinal (0: none), and the statement
// returns the sequence taken and the alerts' IDs in order. Without
// decisions the sequence is left alone: nothing a stream reads changed.
func insertSQL(withDecisions bool) string {
	q := `WITH src AS (
		SELECT nextval('alerts_id_seq') AS id, a.*
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::text[])
			WITH ORDINALITY AS a(scenario, scope, value, events_count, simulated, data, ord)
	), ins AS (
		INSERT INTO alerts (id, created_at, scenario, scope, value, events_count, simulated, data)
		SELECT id, $7, scenario, scope, value, events_count, simulated, data FROM src
	)`
	seq := `0::bigint`
	if withDecisions {
		q += `, s AS (
		UPDATE seq SET value = value + 1 WHERE id = 1 RETURNING value
	), d AS (
		INSERT INTO decisions (id, alert_id, value, scope, start_ip, end_ip, type, origin, scenario, reason, simulated, created_at, until, seq, ports, protocol)
		SELECT u.id, src.id, u.value, u.scope, u.start_ip, u.end_ip, u.type, u.origin, u.scenario, u.reason, u.simulated, $7, u.until, s.value, u.ports, u.protocol
		FROM s CROSS JOIN unnest($8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::bytea[], $13::bytea[], $14::text[], $15::text[], $16::text[], $17::text[], $18::boolean[], $19::bigint[], $20::text[], $21::text[])
			AS u(aord, id, value, scope, start_ip, end_ip, type, origin, scenario, reason, simulated, until, ports, protocol)
		LEFT JOIN src ON src.ord = u.aord
	)`
		seq = `(SELECT value FROM s)`
	}
	return q + ` SELECT ` + seq + `, coalesce((SELECT array_agg(id ORDER BY ord) FROM src), '{}')`
}

var (
	insertWith    = insertSQL(true)
	insertWithout = insertSQL(false)
)

// columns holds a batch column by column, as unnest takes it.
type columns struct {
	scenario, scope, value, data []string
	events                       []int64
	simulated                    []bool

	aord, id                       []int64
	dvalue, dscope                 []string
	start, end                     [][]byte
	typ, origin, dscenario, reason []string
	dsimulated                     []bool
	until                          []int64
	ports, protocol                []string
}

func (c *columns) alert(a model.Alert) error {
	data, err := encodeAlert(a)
	if err != nil {
		return err
	}
	c.scenario = append(c.scenario, a.Scenario)
	c.scope = append(c.scope, a.Scope)
	c.value = append(c.value, a.Value)
	c.events = append(c.events, int64(a.EventsCount))
	c.simulated = append(c.simulated, a.Simulated)
	c.data = append(c.data, string(data))
	return nil
}

// decision adds d, produced by the alert of ordinal aord (1-based; 0 for
// none).
func (c *columns) decision(aord int64, d model.Decision) error {
	value, scope := d.Geo.Value, d.Geo.Scope
	// Only ranges need bounds: single addresses are found by value, and
	// a Country or AS decision's networks are the GeoIP database's.
	var first, last []byte
	if d.Geo.IsZero() {
		if !d.Value.IsValid() {
			return fmt.Errorf("decision %d: invalid value", d.ID)
		}
		p := model.Canonical(d.Value)
		value, scope = model.ValueString(p), model.ScopeOf(p)
		if scope == model.ScopeRange {
			first, last = bounds(p)
		}
	}
	typ := d.Type
	if typ == "" {
		typ = "ban"
	}
	c.aord, c.id = append(c.aord, aord), append(c.id, d.ID)
	c.dvalue, c.dscope = append(c.dvalue, value), append(c.dscope, scope)
	c.start, c.end = append(c.start, first), append(c.end, last)
	c.typ, c.origin = append(c.typ, typ), append(c.origin, string(d.Origin))
	c.dscenario, c.reason = append(c.dscenario, d.Scenario), append(c.reason, d.Reason)
	c.dsimulated, c.until = append(c.dsimulated, d.Simulated), append(c.until, nanos(d.Until))
	c.ports, c.protocol = append(c.ports, model.FormatPorts(d.Ports)), append(c.protocol, d.Protocol)
	return nil
}

// exec runs the insert and returns the sequence it took (0 if none) and
// the alerts' IDs.
func (s *Store) exec(ctx context.Context, c *columns, now time.Time) (int64, []int64, error) {
	args := []any{c.scenario, c.scope, c.value, c.events, c.simulated, c.data, now.UnixNano()}
	q := insertWithout
	if len(c.id) > 0 {
		q = insertWith
		args = append(args, c.aord, c.id, c.dvalue, c.dscope, c.start, c.end, c.typ, c.origin, c.dscenario, c.reason, c.dsimulated, c.until, c.ports, c.protocol)
	}
	var seq int64
	var ids []int64
	if err := s.pool.QueryRow(ctx, q, args...).Scan(&seq, &ids); err != nil {
		return 0, nil, err
	}
	s.publish(seq)
	return seq, ids, nil
}

// InsertAlert stores an alert with the decisions it produced (IDs assigned
// as by InsertDecisions) in one transaction and returns the alert's ID.
func (s *Store) InsertAlert(ctx context.Context, a model.Alert, ds []model.Decision) (int64, error) {
	ids, err := s.InsertAlerts(ctx, []AlertBatch{{Alert: a, Decisions: ds}})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// InsertAlerts stores several alerts with their decisions in one
// transaction and returns the alerts' IDs in order: a fleet server takes
// agents' pushes in batches. Decisions with a zero ID get a fresh one
// (updated in place).
func (s *Store) InsertAlerts(ctx context.Context, batch []AlertBatch) ([]int64, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	var c columns
	for i := range batch {
		b := &batch[i]
		if err := s.assignIDs(ctx, b.Decisions); err != nil {
			return nil, fmt.Errorf("postgres: insert alert %s %s: %w", b.Alert.Scenario, b.Alert.Value, err)
		}
		if err := c.alert(b.Alert); err != nil {
			return nil, fmt.Errorf("postgres: insert alert %s %s: %w", b.Alert.Scenario, b.Alert.Value, err)
		}
		for _, d := range b.Decisions {
			if err := c.decision(int64(i+1), d); err != nil {
				return nil, fmt.Errorf("postgres: insert alert %s %s: %w", b.Alert.Scenario, b.Alert.Value, err)
			}
		}
	}
	ids, err := s.insert(ctx, &c)
	if err != nil {
		a := batch[0].Alert
		return nil, s.wrap(fmt.Sprintf("insert %d alerts (first %s %s)", len(batch), a.Scenario, a.Value), err)
	}
	if len(ids) != len(batch) {
		return nil, s.wrap("insert alerts", fmt.Errorf("%d IDs returned for %d alerts", len(ids), len(batch)))
	}
	return ids, nil
}

// InsertDecisions stores decisions, giving those with a zero ID a fresh
// one (ds is updated in place). It returns after the commit.
func (s *Store) InsertDecisions(ctx context.Context, ds []model.Decision) error {
	if len(ds) == 0 {
		return nil
	}
	if err := s.assignIDs(ctx, ds); err != nil {
		return fmt.Errorf("postgres: insert decisions: %w", err)
	}
	var c columns
	for _, d := range ds {
		if err := c.decision(0, d); err != nil {
			return fmt.Errorf("postgres: insert decisions: %w", err)
		}
	}
	if _, err := s.insert(ctx, &c); err != nil {
		return s.wrap(fmt.Sprintf("insert %d decisions", len(ds)), err)
	}
	return nil
}

// encodeAlert is an alert's stored form, the SQLite store's: its JSON
// with the events sampled to the first and last store.MaxStoredEvents/2.
func encodeAlert(a model.Alert) ([]byte, error) {
	const keep = store.MaxStoredEvents
	if n := len(a.Events); n > keep {
		events := make([]map[string]string, 0, keep)
		events = append(events, a.Events[:keep/2]...)
		a.Events = append(events, a.Events[n-keep/2:]...)
	}
	return json.Marshal(a)
}

// maxAlertJSON bounds what a stored alert inflates to.
const maxAlertJSON = 16 << 20

func decodeAlert(data string, a *model.Alert) error {
	if len(data) > maxAlertJSON {
		return fmt.Errorf("stored alert of %d bytes, over %d", len(data), maxAlertJSON)
	}
	return json.Unmarshal([]byte(data), a)
}
