package detect

import (
	"time"
)

// Line is one log line as a source read it. Field names mirror what CrowdSec
// hub expressions address (evt.Line.Raw, evt.Line.Labels.type, ...).
type Line struct {
	Raw    string
	Src    string            // file path or journald unit, for datasource_path
	Module string            // "file", "journalctl", ...
	Labels map[string]string // acquisition labels; "type" selects parsers
	// Time is the time the source knows for the line (journald's realtime
	// stamp); zero when only the parsers can tell.
	Time time.Time
	// ReadAt is when moat read the line, on the local clock.
	ReadAt time.Time
	// Process is false for lines that only advance a position.
	Process bool
	// Pos is where the line ends in its source. A consumer whose source
	// was built to wait for acknowledgements calls Pos.Ack() once
	// everything the line (and every earlier line of the same source)
	// raised is durably handled; the source then saves its position past
	// the line, never before. The zero Pos acknowledges nothing.
	Pos Position
}

// Acker is a source that saves only the positions its consumer
// acknowledged. Ack is cumulative: acknowledging a line acknowledges every
// earlier line of the same source. It may be called from any goroutine, in
// any order (an older position after a newer one is ignored), and costs an
// atomic compare-and-swap.
type Acker interface {
	Ack(Position)
}

// Position is the token a source puts on each line it sends: the source
// and the line's sequence number in it (from 1, increasing by one per line
// sent). The source maps the number back to what it persists (file
// identity and byte offset after the line, journal cursor).
type Position struct {
	src Acker
	seq uint64
}

// NewPosition is for sources: line number seq of a.
func NewPosition(a Acker, seq uint64) Position { return Position{src: a, seq: seq} }

// Ack acknowledges the line and every earlier line of its source. It does
// nothing for the zero Position.
func (p Position) Ack() {
	if p.src != nil {
		p.src.Ack(p)
	}
}

// Source is the source that sent the line, nil for the zero Position. It
// is comparable: a consumer that merges several sources can keep the
// newest position per source in a map keyed by it.
func (p Position) Source() Acker { return p.src }

// Seq is the line's number in its source; 0 for the zero Position.
func (p Position) Seq() uint64 { return p.seq }

// Event is a line on its way through parser stages and into buckets. Field
// names are those hub expressions use (evt.Parsed.x, evt.Meta.x, evt.StrTime).
type Event struct {
	Line        Line
	Parsed      map[string]string
	Meta        map[string]string
	Enriched    map[string]string
	Unmarshaled map[string]any
	// Stage is the parser stage the event is in ("s00-raw", ...).
	Stage string
	// StrTime is the timestamp text a parser extracted; dateparse turns it
	// into Time and MarshaledTime.
	StrTime       string
	StrTimeFormat string
	MarshaledTime string
	// Time is the event's time: log time when known, else when it was read.
	Time time.Time
	// Whitelisted events are parsed but never poured into buckets.
	Whitelisted     bool
	WhitelistReason string
	// Process is false once a parser stage rejected the event.
	Process bool
	// Overflow is set (its Alert is not nil) on the overflow of a
	// scenario with reprocess: true, poured into the scenarios again;
	// log events leave it zero (and out of JSON).
	Overflow Overflow `json:",omitzero"`

	// holders counts who refers to the event (the engine while it is in
	// flight, each bucket queue keeping it), so that it can be reused for
	// a later line once none does.
	holders int32
	// metaLent is set once an alert shares Meta: a reused event then
	// needs a map of its own.
	metaLent bool
	// whole is set when a holder may read more than Meta (a condition
	// over a bucket's queue).
	whole bool
}

// NewEvent starts an event from a line with empty maps, ready for stage one.
// Parsed and Meta are sized for what hub parsers set on a line, so they
// do not grow field by field.
func NewEvent(l Line) *Event { return NewEventSized(l, DefaultParsedFields, DefaultMetaFields) }

// The numbers of fields NewEvent sizes an event's maps for: what the syslog
// and sshd parsers set on a line.
const (
	DefaultParsedFields = 14
	DefaultMetaFields   = 8
)

// NewEventSized is NewEvent with room for the given numbers of parsed and
// meta fields. A map sized for more than it holds costs memory on every
// event a bucket keeps: one for 16 fields takes 32 slots.
func NewEventSized(l Line, parsed, meta int) *Event {
	return &Event{
		Line:        l,
		Parsed:      make(map[string]string, parsed),
		Meta:        make(map[string]string, meta),
		Enriched:    map[string]string{},
		Unmarshaled: map[string]any{},
		Time:        l.Time,
		Process:     true,
	}
}

// Hold records one more holder of the event.
func (e *Event) Hold() { e.holders++ }

// Release drops a holder and reports whether it was the last.
func (e *Event) Release() bool {
	e.holders--
	return e.holders == 0
}

// LendMeta returns Meta for a reader that keeps it (an alert): the event
// will not write to that map again, even when reused.
func (e *Event) LendMeta() map[string]string {
	e.metaLent = true
	return e.Meta
}

// NeedWhole records that a holder may read the whole event, not only
// its Meta.
func (e *Event) NeedWhole() { e.whole = true }

// TakeParsed takes the parsed fields from an event whose holders only
// read Meta, and returns their map for another event, not emptied: the
// next user clears it, on the core that is about to write it. It returns
// nil when a holder needs them. A bucket can hold an event for minutes,
// its parsed fields are most of its size.
func (e *Event) TakeParsed() map[string]string {
	if e.whole || e.Parsed == nil {
		return nil
	}
	p := e.Parsed
	e.Parsed = nil
	return p
}

// Reuse makes an event no one holds any more a fresh one for l, keeping
// its maps unless they were lent or taken (Parsed is then nil).
func (e *Event) Reuse(l Line) {
	p, m, en, u := e.Parsed, e.Meta, e.Enriched, e.Unmarshaled
	clear(p)
	clear(en)
	clear(u)
	if e.metaLent {
		m = make(map[string]string, len(m))
	} else {
		clear(m)
	}
	*e = Event{Line: l, Parsed: p, Meta: m, Enriched: en, Unmarshaled: u, Time: l.Time, Process: true}
}

// GetMeta returns a meta value or "" (hub expressions call evt.GetMeta).
func (e *Event) GetMeta(key string) string { return e.Meta[key] }

// SetMeta sets a meta value and returns true, so hub filters can call it
// inside an expression.
func (e *Event) SetMeta(key, value string) bool {
	e.Meta[key] = value
	return true
}

// SetParsed sets a parsed value.
func (e *Event) SetParsed(key, value string) { e.Parsed[key] = value }

// The event types GetType returns.
const (
	TypeLog      = "log"
	TypeOverflow = "overflow"
)

// GetType returns TypeOverflow for an overflow poured again (Overflow
// set), else TypeLog, as CrowdSec's Event.GetType.
func (e *Event) GetType() string {
	if e.Overflow.Alert != nil {
		return TypeOverflow
	}
	return TypeLog
}
