package acquire

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/sdjournal"

	"github.com/moatsec/moat/detect"
)

// DefaultJournalFields are copied from each entry into Line.Labels, under
// their journal names, for parsers that want more than the text line.
func DefaultJournalFields() []string {
	return []string{"_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_PID", "_HOSTNAME", "PRIORITY"}
}

// journalWait bounds one sd_journal_wait so a cancelled context is seen.
const journalWait = 250 * time.Millisecond

// journald coalesces the inotify notifications that wake sd_journal_wait
// (its post-change timer, 250ms), so a waiting reader learns of an entry up
// to a quarter second late. For journalHotWindow after a matched entry, when
// more are likely (an attack in progress), the source waits at most
// journalHotPoll before looking again: sub-millisecond latency while lines
// flow (for about 9% of one core while hot, measured on a 2-core VM), the
// journal's own wake-up when idle.
const (
	// journalRefresh: an idle source reopens the journal this often.
	journalRefresh   = 5 * time.Second
	journalHotPoll   = 250 * time.Microsecond
	journalHotWindow = 5 * time.Second
)

type journalState struct {
	Cursor string `json:"cursor"`
}

type journalSource struct {
	cfg       Config
	statePath string
	c         counters
	start     startGate

	// ack maps acknowledged lines to their cursors; nil without WithAcks.
	ack *ackLog[string]

	mu     sync.Mutex
	cursor string
	dirty  bool
}

func newJournalSource(cfg Config, stateDir string, o options) (*journalSource, error) {
	s := &journalSource{cfg: cfg, statePath: stateFile(stateDir, "journal", cfg.Name), start: newStartGate()}
	if o.acks {
		s.ack = newAckLog[string]()
	}
	return s, nil
}

// Ack implements detect.Acker: under WithAcks the source saves the cursor
// of the newest acknowledged entry.
func (s *journalSource) Ack(p detect.Position) {
	if s.ack != nil && p.Source() == detect.Acker(s) {
		s.ack.ack(p.Seq())
	}
}

// Checkpoint implements Checkpointer.
func (s *journalSource) Checkpoint() error { return s.saveErr() }

func (s *journalSource) Name() string { return s.cfg.Name }

func (s *journalSource) Stats() Stats { return s.c.snapshot() }

// Positioned implements Positioner.
func (s *journalSource) Positioned() <-chan struct{} { return s.start.ch }

// openJournal opens the system journal or a directory and applies matches
// in journalctl's syntax: FIELD=value terms, "+" for a disjunction.
func openJournal(dir string, matches []string) (*sdjournal.Journal, error) {
	var j *sdjournal.Journal
	var err error
	if dir != "" {
		j, err = sdjournal.NewJournalFromDir(dir)
	} else {
		j, err = sdjournal.NewJournal()
	}
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if err := addMatches(j, matches); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// addMatches applies matches in journalctl's syntax.
func addMatches(j *sdjournal.Journal, matches []string) error {
	var err error
	for _, m := range matches {
		if m == "+" {
			err = j.AddDisjunction()
		} else {
			err = j.AddMatch(m)
		}
		if err != nil {
			return fmt.Errorf("journal match %q: %w", m, err)
		}
	}
	return nil
}

// journalReader is the state of one Stream call: the open journal and where
// the reader stands in it.
type journalReader struct {
	s *journalSource
	j *sdjournal.Journal
	r *entryReader
	// from is the cursor seek returns to; empty, it seeks to the head.
	from string
	// skipFirst is the cursor just sought to: its entry was already read.
	skipFirst string
	// sent: entries were sent since the cursor was last published. The
	// journal still points at the last sent entry until the next Next, so
	// the cursor is taken lazily: before moving on once the interval has
	// passed, and when idle.
	sent        bool
	lastPub     time.Time
	lastEntry   time.Time
	current     bool // the journal points at an entry (not only a seek)
	lastRefresh time.Time
}

func (s *journalSource) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer s.start.open()
	rd, tailStart, err := s.openReader()
	if err != nil {
		return fmt.Errorf("journal source %s: %w", s.cfg.Name, err)
	}
	defer func() { rd.j.Close() }()
	s.mu.Lock()
	// A tail start is saved like a position: a restart before the first
	// line must not start at a later tail.
	s.cursor, s.dirty = rd.from, tailStart
	s.mu.Unlock()

	s.start.open()
	var kick chan struct{}
	if s.ack != nil {
		kick = s.ack.kick
	}
	defer runSaver(s.save, kick)()

	rd.r = newEntryReader(rd.j, s.cfg.Labels, s.cfg.JournalFields, s.cfg.MaxLineLength, &s.c)
	rd.lastPub = time.Now()
	rd.lastRefresh = time.Now()
	for {
		if ctx.Err() != nil {
			if rd.sent {
				rd.publish()
			}
			return nil
		}
		if rd.sent && time.Since(rd.lastPub) >= StateInterval {
			rd.publish()
		}
		n, err := rd.j.Next()
		if err != nil {
			// A corrupt or vanished journal file: count it and carry on
			// with the rest of the journal.
			s.c.fail(fmt.Errorf("journal next: %w", err))
			rd.j.Wait(journalWait)
			continue
		}
		if n == 0 {
			if rd.sent {
				rd.publish()
			}
			if s.cfg.Mode == "cat" {
				return nil
			}
			rd.idle()
			continue
		}
		if !rd.deliver(ctx, out) {
			return nil
		}
	}
}

// openReader opens the journal at the saved cursor, or at the configured start
// without one. tailStart reports that the start is the journal's tail.
func (s *journalSource) openReader() (rd *journalReader, tailStart bool, err error) {
	var st journalState
	if _, err := loadState(s.statePath, &st); err != nil {
		return nil, false, err
	}
	// Opened without matches first: the tail start is the newest entry of
	// the whole journal, found before the matches narrow the view.
	j, err := openJournal(s.cfg.JournalDir, nil)
	if err != nil {
		return nil, false, err
	}
	rd = &journalReader{s: s, j: j, from: st.Cursor}
	if rd.from == "" && s.cfg.Start == "tail" && s.cfg.Mode == "tail" {
		rd.from = newestCursor(j)
		tailStart = rd.from != ""
	}
	if err := addMatches(j, s.cfg.JournalctlFilter); err != nil {
		j.Close()
		return nil, false, err
	}
	if err := rd.seek(); err != nil {
		j.Close()
		return nil, false, fmt.Errorf("seek: %w", err)
	}
	return rd, tailStart, nil
}

// newestCursor is the cursor of the journal's newest entry, "" when there
// is none. The tail start is a cursor, like a restart's, not SeekTail (with
// nothing matching yet it loses the first entries) nor a realtime seek
// (which, with matches across rotations, can find nothing).
func newestCursor(j *sdjournal.Journal) string {
	if err := j.SeekTail(); err != nil {
		return ""
	}
	if n, err := j.Previous(); err != nil || n != 1 {
		return ""
	}
	c, _ := j.GetCursor()
	return c
}

// seek puts the journal at the start position, and again whenever the file
// set changes before an entry was read. A cursor whose entry was vacuumed
// still seeks to the nearest entry; TestCursor then fails and that entry is
// new, so it is kept.
func (rd *journalReader) seek() error {
	if rd.from != "" {
		rd.skipFirst = rd.from
		return rd.j.SeekCursor(rd.from)
	}
	// start: head, mode: cat, or an empty journal: everything is new.
	return rd.j.SeekHead()
}

// publish hands the cursor of the last sent entry to the saver.
func (rd *journalReader) publish() {
	s := rd.s
	if s.ack != nil {
		// Only acknowledged entries are saved, by the saver.
		rd.sent = false
		return
	}
	c, err := rd.j.GetCursor()
	if err != nil {
		s.c.fail(fmt.Errorf("journal cursor: %w", err))
		return
	}
	s.mu.Lock()
	s.cursor, s.dirty = c, true
	s.mu.Unlock()
	rd.sent, rd.lastPub = false, time.Now()
}

// idle waits for new entries once the reader is at the end of the journal.
func (rd *journalReader) idle() {
	s := rd.s
	wait := journalWait
	if time.Since(rd.lastEntry) < journalHotWindow {
		wait = journalHotPoll
	}
	var tail string // the last entry read, to re-anchor on
	if rd.current {
		tail, _ = rd.j.GetCursor()
	}
	if time.Since(rd.lastRefresh) >= journalRefresh && time.Since(rd.lastEntry) >= journalRefresh && rd.reopen(tail) {
		return
	}
	// The goroutine this source just handed lines to was readied on
	// this P; a cgo wait keeps the P until sysmon takes it back,
	// up to 10ms later. Let it run first.
	runtime.Gosched()
	w := rd.j.Wait(wait)
	switch {
	case tail != "":
		// Re-anchor on the last entry read before moving on: at the
		// tail, sd-journal (before systemd 254) can see an entry
		// journald is still writing and lose its place, skipping
		// entries; after rotation or vacuum too. A seek by cursor
		// finds the place afresh.
		if err := rd.j.SeekCursor(tail); err == nil {
			rd.skipFirst = tail
		}
	case w == sdjournal.SD_JOURNAL_INVALIDATE:
		if err := rd.seek(); err != nil {
			s.c.fail(fmt.Errorf("journal seek: %w", err))
		}
	}
}

// reopen replaces the journal handle of a source idle for a while, in case
// it stopped noticing new journal files (seen under heavy rotation), and
// seeks it to tail, the last entry read. It reports whether it did.
func (rd *journalReader) reopen(tail string) bool {
	s := rd.s
	rd.lastRefresh = time.Now()
	nj, err := openJournal(s.cfg.JournalDir, s.cfg.JournalctlFilter)
	if err != nil {
		s.c.fail(fmt.Errorf("journal reopen: %w", err))
		return false
	}
	rd.j.Close()
	rd.j, rd.r.j = nj, nj
	if tail != "" {
		rd.from, rd.current = tail, false
	}
	if err := rd.seek(); err != nil {
		s.c.fail(fmt.Errorf("journal seek: %w", err))
	}
	return true
}

// deliver sends the entry the journal points at, unless it was read
// before. It reports false when ctx ended before the line was taken.
func (rd *journalReader) deliver(ctx context.Context, out chan<- detect.Line) bool {
	s := rd.s
	rd.current = true
	if rd.skipFirst != "" {
		c := rd.skipFirst
		rd.skipFirst = ""
		if rd.j.TestCursor(c) == nil {
			return true
		}
	}
	l, t := rd.r.entry()
	if l.Src == "" {
		return true // an entry without MESSAGE (binary or missing) carries no line
	}
	var cursor string
	if s.ack != nil {
		// The cursor is taken now, while the journal points at the
		// entry: a later acknowledgement must map back to it.
		var err error
		if cursor, err = rd.j.GetCursor(); err != nil {
			s.c.fail(fmt.Errorf("journal cursor: %w", err))
			return true
		}
		l.Pos = detect.NewPosition(s, s.ack.next())
	}
	at, ok := sendAt(ctx, out, l)
	if !ok {
		// The current entry was not delivered: step back to the last
		// one that was, if it is not already saved.
		if rd.sent {
			if n, err := rd.j.Previous(); err == nil && n == 1 {
				rd.publish()
			}
		}
		return false
	}
	if s.ack != nil {
		s.ack.sent(l.Pos.Seq(), cursor)
	}
	s.c.lines.Add(1)
	s.c.lag.Store(int64(at.Sub(t)))
	rd.sent, rd.lastEntry = true, at
	return true
}

func (s *journalSource) save() { _ = s.saveErr() }

// saveErr writes the cursor if it moved: the newest acknowledged one under
// WithAcks, else the newest one published. A failure is also counted.
func (s *journalSource) saveErr() error {
	if s.ack != nil {
		s.ack.take(func(c string) {
			s.mu.Lock()
			s.cursor, s.dirty = c, true
			s.mu.Unlock()
		})
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	st := journalState{Cursor: s.cursor}
	s.dirty = false
	s.mu.Unlock()
	if err := saveState(s.statePath, &st); err != nil {
		s.c.fail(err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("journal source %s: %w", s.cfg.Name, err)
	}
	return nil
}

// entryReader turns the current journal entry into a line, reading only
// the fields it needs (GetDataValue is several times cheaper than GetEntry).
type entryReader struct {
	j      journalEntry
	labels map[string]string
	fields []string
	max    int
	c      *counters
	b      strings.Builder
}

// journalEntry is what entryReader reads of the journal's current entry:
// an *sdjournal.Journal, or a plain field map where the line building is
// fuzzed without a journal.
type journalEntry interface {
	GetDataValue(field string) (string, error)
	GetRealtimeUsec() (uint64, error)
}

func newEntryReader(j journalEntry, labels map[string]string, fields []string, max int, c *counters) *entryReader {
	if fields == nil {
		fields = DefaultJournalFields()
	}
	return &entryReader{j: j, labels: labels, fields: fields, max: max, c: c}
}

// field returns a field for the line itself, from labels when it was
// already read as one of r.fields (present or not), so no field is read twice.
func (r *entryReader) field(labels map[string]string, name string) string {
	if slices.Contains(r.fields, name) {
		return labels[name]
	}
	return r.get(name)
}

func (r *entryReader) get(field string) string {
	v, err := r.j.GetDataValue(field)
	if err != nil {
		return "" // absent field (ENOENT)
	}
	return v
}

// entry builds the line journalctl's short output prints, which the hub's
// syslog parsers accept: "Jan 02 15:04:05 HOST IDENT[PID]: MESSAGE". Src is
// empty when the entry has no message.
func (r *entryReader) entry() (detect.Line, time.Time) {
	msg, err := r.j.GetDataValue("MESSAGE")
	if err != nil {
		return detect.Line{}, time.Time{}
	}
	usec, err := r.j.GetRealtimeUsec()
	var ts time.Time
	if err == nil {
		ts = time.UnixMicro(int64(usec))
	}
	labels := make(map[string]string, len(r.labels)+len(r.fields))
	for _, f := range r.fields {
		if v := r.get(f); v != "" {
			labels[f] = v
		}
	}
	ident := r.field(labels, "SYSLOG_IDENTIFIER")
	if ident == "" {
		ident = r.field(labels, "_COMM")
	}
	pid := r.field(labels, "_PID")
	if pid == "" {
		pid = r.field(labels, "SYSLOG_PID")
	}
	host := r.field(labels, "_HOSTNAME")
	unit := r.field(labels, "_SYSTEMD_UNIT")
	for k, v := range r.labels {
		labels[k] = v // acquisition labels win over journal fields
	}
	r.b.Reset()
	r.b.WriteString(ts.Format("Jan 02 15:04:05"))
	r.b.WriteByte(' ')
	r.b.WriteString(host)
	r.b.WriteByte(' ')
	if ident == "" {
		ident = "unknown"
	}
	r.b.WriteString(ident)
	if pid != "" {
		r.b.WriteByte('[')
		r.b.WriteString(pid)
		r.b.WriteByte(']')
	}
	r.b.WriteString(": ")
	r.b.WriteString(msg)
	raw := r.b.String()
	r.c.bytes.Add(uint64(len(msg)))
	if len(raw) > r.max {
		raw = string(cutRune([]byte(raw[:r.max])))
		r.c.cut.Add(1)
	}
	raw = strings.ToValidUTF8(raw, string(utf8.RuneError))
	src := unit
	if src == "" {
		src = ident
	}
	return detect.Line{Raw: raw, Src: src, Module: KindJournal, Labels: labels, Time: ts, Process: true}, ts
}
