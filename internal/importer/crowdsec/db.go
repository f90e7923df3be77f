package crowdsec

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/moatsec/moat/internal/importer"
)

// DefaultDB is where Debian's CrowdSec keeps its database.
const DefaultDB = "/var/lib/crowdsec/data/crowdsec.db"

// maxListed bounds the decisions a report note names one by one.
const maxListed = 20

// Decision is a row of CrowdSec's decisions table.
type Decision struct {
	ID                                   int64
	Until                                time.Time
	Scenario, Type, Scope, Value, Origin string
	Simulated                            bool
}

func (d Decision) String() string {
	return fmt.Sprintf("#%d %s %s:%s (%s, until %s)", d.ID, d.Type, d.Scope, d.Value, d.Origin, d.Until.UTC().Format(time.RFC3339))
}

// database carries over what CrowdSec's database holds: active bans as
// decisions, allowlists (CrowdSec 1.6 and later) as allowlist entries,
// and the names of registered bouncers as a note.
func database(ctx context.Context, r *importer.Result, path string, now time.Time) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		r.Notef(path, "no CrowdSec database: no decisions nor allowlists carried over")
		return nil
	}
	q := url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	rows, err := ReadDecisions(ctx, db)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	decisions(r, path, rows, now)
	if err := allowlists(ctx, r, db, path, now); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return bouncers(ctx, r, db, path)
}

// ReadDecisions returns every row of the decisions table, in id order.
func ReadDecisions(ctx context.Context, db *sql.DB) ([]Decision, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, until, scenario, type, scope, value, origin, simulated FROM decisions ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read decisions: %w", err)
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		var d Decision
		var until any
		if err := rows.Scan(&d.ID, &until, &d.Scenario, &d.Type, &d.Scope, &d.Value, &d.Origin, &d.Simulated); err != nil {
			return nil, fmt.Errorf("read decisions: %w", err)
		}
		d.Until, _ = dbTime(until)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read decisions: %w", err)
	}
	return out, nil
}

// dbTime reads a datetime column as the SQLite driver hands it: a time
// when the text parses, else the text.
func dbTime(v any) (time.Time, bool) {
	var s string
	switch t := v.(type) {
	case time.Time:
		return t, true
	case string:
		s = t
	case []byte:
		s = string(t)
	default:
		return time.Time{}, false
	}
	s = strings.TrimSuffix(s, "Z")
	for _, f := range sqlite3.SQLiteTimestampFormats {
		if t, err := time.ParseInLocation(f, s, time.UTC); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// decisions keeps the active bans on an address or a range, one per
// value (the one ending last), with the rest of their time; everything
// else is reported.
func decisions(r *importer.Result, path string, rows []Decision, now time.Time) {
	kept := map[string]Decision{}
	left := map[string][]string{}
	var whys []string
	leave := func(why string, d Decision) {
		if left[why] == nil {
			whys = append(whys, why)
		}
		left[why] = append(left[why], d.String())
	}
	for _, d := range rows {
		scope := strings.ToLower(d.Scope)
		var value string
		switch {
		case !d.Until.After(now):
			leave("expired", d)
			continue
		case d.Simulated:
			leave("simulated", d)
			continue
		case d.Origin == "CAPI" || d.Origin == "lists":
			leave("from CrowdSec's community blocklists (moat's community: and feeds: sections pull blocklists of their own)", d)
			continue
		case d.Type != "ban":
			leave("of type "+d.Type+" (only bans are carried over)", d)
			continue
		case scope == "ip":
			a, err := netip.ParseAddr(d.Value)
			if err != nil {
				leave("whose value is not an address", d)
				continue
			}
			value = a.Unmap().String()
		case scope == "range":
			p, err := netip.ParsePrefix(d.Value)
			if err != nil {
				leave("whose value is not a range", d)
				continue
			}
			value = p.Masked().String()
		default:
			leave("of scope "+d.Scope+" (only Ip and Range are carried over)", d)
			continue
		}
		if old, ok := kept[value]; !ok || d.Until.After(old.Until) {
			kept[value] = d
		}
	}
	for _, why := range whys {
		l := left[why]
		more := ""
		if len(l) > maxListed {
			more = fmt.Sprintf(", and %d more", len(l)-maxListed)
			l = l[:maxListed]
		}
		r.Notef(path, "%d decision(s) %s, not imported: %s%s", len(left[why]), why, strings.Join(l, ", "), more)
	}
	values := make([]string, 0, len(kept))
	for v := range kept {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		d := kept[v]
		r.Decisions = append(r.Decisions, importer.Decision{
			Value:    v,
			Duration: fmt.Sprintf("%ds", int64(math.Ceil(d.Until.Sub(now).Seconds()))),
			Reason:   fmt.Sprintf("CrowdSec decision #%d (%s)", d.ID, d.Origin),
			Scenario: d.Scenario,
		})
	}
}

// allowlists reads cscli allowlists (CrowdSec 1.6 and later; older
// databases have no such table) into allowlist entries.
func allowlists(ctx context.Context, r *importer.Result, db *sql.DB, path string, now time.Time) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('allow_lists', 'allow_list_items', 'allow_list_allowlist_items')`).Scan(&n); err != nil {
		return err
	}
	if n < 3 {
		return nil
	}
	rows, err := db.QueryContext(ctx, `SELECT l.name, i.value, COALESCE(i.comment, ''), i.expires_at
FROM allow_lists l
JOIN allow_list_allowlist_items j ON j.allow_list_id = l.id
JOIN allow_list_items i ON i.id = j.allow_list_item_id
ORDER BY l.name, i.id`)
	if err != nil {
		return fmt.Errorf("read allowlists: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for _, e := range r.Fragment.Allowlist {
		seen[e.Value] = true
	}
	expired := 0
	for rows.Next() {
		var list, val, comment string
		var expires any
		if err := rows.Scan(&list, &val, &comment, &expires); err != nil {
			return fmt.Errorf("read allowlists: %w", err)
		}
		e := importer.AllowEntry{Comment: "CrowdSec allowlist " + list}
		if comment != "" {
			e.Comment += ": " + comment
		}
		if t, ok := dbTime(expires); ok && !t.IsZero() {
			if !t.After(now) {
				expired++
				continue
			}
			e.Expires = t.UTC().Format(time.RFC3339)
		}
		v, ok, why := importer.AllowValue(strings.TrimSpace(val))
		if why != "" {
			r.Notef(path, "allowlist %s: %s: left out", list, why)
		}
		if !ok || seen[v] {
			continue
		}
		seen[v] = true
		e.Value = v
		r.Fragment.Allowlist = append(r.Fragment.Allowlist, e)
	}
	if expired > 0 {
		r.Notef(path, "%d expired allowlist item(s): left out", expired)
	}
	return rows.Err()
}

// bouncers names the bouncers registered with CrowdSec: their keys are
// stored hashed, so each must be added to moat again.
func bouncers(ctx context.Context, r *importer.Result, db *sql.DB, path string) error {
	rows, err := db.QueryContext(ctx, `SELECT name FROM bouncers WHERE revoked = 0 ORDER BY name`)
	if err != nil {
		return fmt.Errorf("read bouncers: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("read bouncers: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read bouncers: %w", err)
	}
	if len(names) > 0 {
		r.Notef(path, "bouncers registered with CrowdSec (%s): their keys cannot be carried over; give each one the key of moat bouncers add NAME", strings.Join(names, ", "))
	}
	return nil
}
