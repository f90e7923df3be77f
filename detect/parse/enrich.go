package parse

import (
	"strconv"
	"strings"
	"time"
)

// enricher is a static `method:`; it writes into evt.Enriched.
type enricher func(r *run, value string)

func (p *Pipeline) enricher(name string) enricher {
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

func enrichParseDate(r *run, value string) {
	evt := r.evt
	if value == "" {
		return
	}
	year := r.p.opts.Year
	if year == 0 && !evt.Line.ReadAt.IsZero() {
		year = evt.Line.ReadAt.UTC().Year()
	}
	t, ok := ParseDate(value, evt.StrTimeFormat, year)
	if !ok {
		return
	}
	b, err := t.MarshalText()
	if err != nil {
		return
	}
	evt.Enriched["MarshaledTime"] = string(b)
	if r.p.opts.LogTime || evt.Time.IsZero() {
		evt.Time = t
	}
}
