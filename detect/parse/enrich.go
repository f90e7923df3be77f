package parse

import (
	"strconv"
	"strings"
	"time"
)

// enricher is a static `method:`; it writes into evt.Enriched.
type enricher func(r *run, value string)

func (p *Pipeline) enricher(name string, geo GeoIP) enricher {
	if e := geoEnricher(name, geo); e != nil {
		return e
	}
	switch name {
	case "ParseDate":
		return enrichParseDate
	case "UnmarshalJSON":
		return nil
	case "IpToRange", "GeoIpCity", "GeoIpASN", "reverse_dns":
		// These need a GeoIP database or the network; moat ships neither,
		// so the event flows on without the fields.
		return enrichUnavailable
	}
	return nil
}

func enrichUnavailable(r *run, _ string) {
	r.p.unavailable.Add(1)
}

// dateLayouts are tried in order when the parser gave no StrTimeFormat.
var dateLayouts = []string{
	time.RFC3339,
	"02/Jan/2006:15:04:05 -0700",
	"Mon Jan _2 15:04:05 2006",
	"02-Jan-2006 15:04:05 europe/paris",
	"01/02/2006 15:04:05",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"Jan _2 15:04:05",
	"Mon Jan 02 15:04:05.000000 2006",
	"2006-01-02T15:04:05Z07:00",
	"2006/01/02",
	"2006/01/02 15:04",
	"2006-01-02",
	"2006-01-02 15:04",
	"2006/01/02 15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02T15:04:05-0700",
	"Mon, 02 Jan 2006 15:04:05 -0700",
	"Mon, 02 Jan 2006 15:04:05 MST",
	"Jan _2 2006 15:04:05",
	"02/Jan/2006:15:04:05",
	"Mon Jan _2 15:04:05 MST 2006",
}

// syslogLayout is tried first when the text looks like "Mmm dd hh:mm:ss".
const syslogLayout = "Jan _2 15:04:05"

func looksSyslog(s string) bool {
	return len(s) >= 15 && s[3] == ' ' && s[0] >= 'A' && s[0] <= 'Z' && (s[len(s)-3] == ':' || strings.Count(s, ":") == 2)
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseSyslogDate reads "Mmm dd hh:mm:ss" (day space- or zero-padded) as
// time.Parse(syslogLayout) does, without its generality; false sends
// anything else (other case, other widths) to time.Parse.
func parseSyslogDate(s string) (time.Time, bool) {
	if len(s) != 15 || s[3] != ' ' || s[6] != ' ' || s[9] != ':' || s[12] != ':' {
		return time.Time{}, false
	}
	month := 0
	for i, m := range months {
		if s[:3] == m {
			month = i + 1
			break
		}
	}
	if month == 0 {
		return time.Time{}, false
	}
	num := func(a, b byte) (int, bool) {
		if !isDigit(b) || (a != ' ' && !isDigit(a)) {
			return 0, false
		}
		n := int(b - '0')
		if a != ' ' {
			n += 10 * int(a-'0')
		}
		return n, true
	}
	day, ok1 := num(s[4], s[5])
	hour, ok2 := num(s[7], s[8])
	minute, ok3 := num(s[10], s[11])
	sec, ok4 := num(s[13], s[14])
	if !ok1 || !ok2 || !ok3 || !ok4 || s[7] == ' ' || s[10] == ' ' || s[13] == ' ' {
		return time.Time{}, false
	}
	// Year 0 is a leap year, as time.Parse assumes for a date without one.
	if day < 1 || day > time.Date(0, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(0, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

// ParseDate parses a log timestamp as CrowdSec's dateparse does: the
// parser's layout first, then the known layouts, then a unix time. Dates
// without a year get year (or the current year when year is 0).
func ParseDate(s, layout string, year int) (time.Time, bool) {
	fix := func(t time.Time) time.Time {
		if t.Year() == 0 {
			y := year
			if y == 0 {
				y = time.Now().UTC().Year()
			}
			t = t.AddDate(y, 0, 0)
		}
		return t
	}
	if layout != "" {
		if t, err := time.Parse(layout, s); err == nil && !t.IsZero() {
			return fix(t), true
		}
	}
	if looksSyslog(s) {
		if t, ok := parseSyslogDate(s); ok {
			return fix(t), true
		}
		if t, err := time.Parse(syslogLayout, s); err == nil {
			return fix(t), true
		}
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil && !t.IsZero() {
			return fix(t), true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		sec := int64(f)
		if sec > 1e12 { // milliseconds
			return time.UnixMilli(sec).UTC(), true
		}
		return time.Unix(sec, 0).UTC(), true
	}
	return time.Time{}, false
}

// marshalTime is t as evt.MarshaledTime holds it, "" when it has none
// (a year out of range).
func marshalTime(t time.Time) string {
	var buf [40]byte
	b, err := t.AppendText(buf[:0])
	if err != nil {
		return ""
	}
	return string(b)
}

// dateMemo is the last timestamp text dateparse read, and what it made of
// it.
type dateMemo struct {
	value  string
	layout string
	year   int
	t      time.Time
	ok     bool
	text   string // t marshalled, when ok
}

func enrichParseDate(r *run, value string) {
	evt := r.evt
	if value == "" {
		return
	}
	year := r.p.opts.Year
	if year == 0 && !evt.Line.ReadAt.IsZero() {
		year = evt.Line.ReadAt.UTC().Year()
	}
	// Consecutive lines mostly carry the same timestamp text: the last
	// one parsed, and its marshalled form, serve again.
	m := &r.p.lastDate
	// value is never empty here, so the zero memo matches nothing.
	if m.value != value || m.layout != evt.StrTimeFormat || m.year != year {
		t, ok := ParseDate(value, evt.StrTimeFormat, year)
		*m = dateMemo{value: value, layout: evt.StrTimeFormat, year: year, t: t, ok: ok}
		if ok {
			m.text = marshalTime(t)
		}
	}
	t, text := m.t, m.text
	if !m.ok {
		// As CrowdSec's dateparse: a date no format reads becomes the time
		// the line was read, so the event still counts as timed.
		if t = evt.Line.ReadAt; t.IsZero() {
			t = time.Now()
		}
		t = t.UTC()
		text = marshalTime(t)
	}
	if text == "" {
		return
	}
	evt.Enriched["MarshaledTime"] = text
	if r.p.opts.LogTime || evt.Time.IsZero() {
		evt.Time = t
	}
}
