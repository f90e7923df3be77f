package acquire

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coreos/go-systemd/v22/sdjournal"

	"github.com/moatsec/moat/detect"
)

// Replay reads cold logs once, in order: files (plain or gzip, told apart
// by their magic bytes), stdin ("-"), or a journal directory. It is a
// Source whose Stream returns nil at the end of its input.
type Replay struct {
	// MaxLineLength cuts longer lines (counted in Stats.Cut).
	MaxLineLength int

	name    string
	labels  map[string]string
	inputs  []*replayInput
	journal *sdjournal.Journal
	total   int64 // -1 when unknown (stdin from a pipe, journal)
	read    atomic.Int64
	done    atomic.Bool
	c       counters

	mu     sync.Mutex
	damage []*Damage
}

// Damage is an input a replay could not read to its end: a corrupt or
// truncated gzip, a read error, a corrupt journal file. It is an error
// naming the input and where it broke.
type Damage struct {
	Input string
	// Lines is how many lines of the input were read before it broke.
	Lines uint64
	// Offset is how many bytes of the input (uncompressed, for gzip) were
	// read before it broke; -1 for a journal.
	Offset int64
	Err    error
}

func (d *Damage) Error() string {
	if d.Offset < 0 {
		return fmt.Sprintf("replay %s: broken after %d entries: %v", d.Input, d.Lines, d.Err)
	}
	return fmt.Sprintf("replay %s: broken after line %d (byte %d): %v", d.Input, d.Lines, d.Offset, d.Err)
}

func (d *Damage) Unwrap() error { return d.Err }

// Damaged returns the inputs that broke, in the order they were read.
// Their lines before the damage were replayed.
func (r *Replay) Damaged() []*Damage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Damage(nil), r.damage...)
}

// maxDamage bounds the damage a journal replay records: past it, the
// replay stops.
const maxDamage = 1000

func (r *Replay) damaged(d *Damage) int {
	r.c.fail(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.damage = append(r.damage, d)
	return len(r.damage)
}

type replayInput struct {
	name string
	r    io.Reader // the raw bytes, counted for progress
	c    io.Closer // nil for stdin
}

// Progress is how far a replay got, for a progress bar.
type Progress struct {
	// BytesRead is the input consumed: on-disk bytes for files (compressed
	// bytes for gzip), message bytes for a journal.
	BytesRead int64
	// BytesTotal is the input's size in the same unit, -1 when unknown
	// (stdin from a pipe, a journal directory).
	BytesTotal int64
	Lines      uint64
	// Done is set once Stream has returned.
	Done bool
}

// OpenReplay opens paths for a replay; "-" is stdin. All files are opened
// now so a missing one fails before anything is read.
func OpenReplay(paths []string, labels map[string]string) (*Replay, error) {
	return openReplay(paths, labels, os.Stdin)
}

func openReplay(paths []string, labels map[string]string, stdin io.Reader) (*Replay, error) {
	if len(paths) == 0 {
		return nil, errors.New("replay: no input")
	}
	r := &Replay{MaxLineLength: DefaultMaxLineLength, name: "replay", labels: labels}
	for _, p := range paths {
		if p == "-" {
			r.inputs = append(r.inputs, &replayInput{name: "stdin", r: stdin})
			// stdin redirected from a file has a size; a pipe has none.
			if f, ok := stdin.(*os.File); ok && r.total >= 0 {
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					r.total += fi.Size()
					continue
				}
			}
			r.total = -1
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("replay: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			r.Close()
			return nil, fmt.Errorf("replay: %w", err)
		}
		if fi.IsDir() {
			f.Close()
			r.Close()
			return nil, fmt.Errorf("replay: %s is a directory", p)
		}
		if r.total >= 0 {
			r.total += fi.Size()
		}
		r.inputs = append(r.inputs, &replayInput{name: p, r: f, c: f})
	}
	if len(paths) == 1 {
		r.name = "replay:" + paths[0]
	}
	return r, nil
}

// OpenJournalDir opens a journal directory (journal files copied from a
// host) for a replay of the entries matching matches, oldest first.
func OpenJournalDir(dir string, matches []string, labels map[string]string) (*Replay, error) {
	for _, m := range matches {
		if m != "+" && !validMatch.MatchString(m) {
			return nil, fmt.Errorf("replay: journal match %q: want FIELD=value or +", m)
		}
	}
	j, err := openJournal(dir, matches)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", dir, err)
	}
	if err := j.SeekHead(); err != nil {
		j.Close()
		return nil, fmt.Errorf("replay %s: seek: %w", dir, err)
	}
	return &Replay{MaxLineLength: DefaultMaxLineLength, name: "replay:" + dir, labels: labels, journal: j, total: -1}, nil
}

func (r *Replay) Stats() Stats { return r.c.snapshot() }

// Progress may be called from any goroutine while Stream runs.
func (r *Replay) Progress() Progress {
	return Progress{BytesRead: r.read.Load(), BytesTotal: r.total, Lines: r.c.lines.Load(), Done: r.done.Load()}
}

// Close releases the inputs; Stream closes them itself when it ends.
func (r *Replay) Close() error {
	for _, in := range r.inputs {
		if in.c != nil {
			in.c.Close()
			in.c = nil
		}
	}
	if r.journal != nil {
		r.journal.Close()
		r.journal = nil
	}
	return nil
}

// Stream sends every line in order and returns nil at the end of the input
// or when ctx is cancelled. A file that fails mid-way is counted and
// recorded (Damaged), and the replay goes on with the next one.
func (r *Replay) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer r.done.Store(true)
	defer r.Close()
	if r.journal != nil {
		return r.streamJournal(ctx, out)
	}
	buf := make([]byte, 256*1024)
	for _, in := range r.inputs {
		if err := r.streamInput(ctx, out, in, buf); err != nil {
			if errors.Is(err, errStopped) {
				return nil
			}
			var d *Damage
			if !errors.As(err, &d) {
				d = &Damage{Input: in.name, Err: err}
			}
			r.damaged(d)
		}
		if in.c != nil {
			in.c.Close()
			in.c = nil
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (r *Replay) streamInput(ctx context.Context, out chan<- detect.Line, in *replayInput, buf []byte) error {
	br := bufio.NewReaderSize(countingReader{in.r, &r.read}, 64*1024)
	var src io.Reader = br
	var lines uint64
	var off int64
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return &Damage{Input: in.name, Err: fmt.Errorf("gzip header: %w", err)}
		}
		defer zr.Close()
		src = zr
	}
	sp := splitter{max: r.MaxLineLength}
	emit := func(line []byte, cut bool) bool {
		l := detect.Line{Raw: string(line), Src: in.name, Module: KindFile, Labels: r.labels, Process: true}
		if _, ok := sendAt(ctx, out, l); !ok {
			return false
		}
		lines++
		r.c.lines.Add(1)
		if cut {
			r.c.cut.Add(1)
		}
		return true
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			off += int64(n)
			r.c.bytes.Add(uint64(n))
			if !sp.feed(buf[:n], func(line []byte, cut bool, _ int) bool { return emit(line, cut) }) {
				return errStopped
			}
		}
		if errors.Is(err, io.EOF) {
			if l := sp.flush(); l != nil && !emit(l, false) {
				return errStopped
			}
			return nil
		}
		if err != nil {
			// A gzip cut short ends in io.ErrUnexpectedEOF; its partial
			// last line is not sent: it is not a line the log holds.
			return &Damage{Input: in.name, Lines: lines, Offset: off, Err: err}
		}
	}
}

func (r *Replay) streamJournal(ctx context.Context, out chan<- detect.Line) error {
	er := newEntryReader(r.journal, r.labels, nil, r.MaxLineLength, &r.c)
	for {
		n, err := r.journal.Next()
		if err != nil {
			// A corrupt file: record it; sd_journal skips to the next file.
			if r.damaged(&Damage{Input: strings.TrimPrefix(r.name, "replay:"), Lines: r.c.lines.Load(), Offset: -1, Err: err}) > maxDamage {
				return fmt.Errorf("replay %s: too many errors: %w", r.name, err)
			}
			continue
		}
		if n == 0 {
			return nil
		}
		l, t := er.entry()
		if l.Src == "" {
			continue
		}
		r.read.Store(int64(r.c.bytes.Load()))
		at, ok := sendAt(ctx, out, l)
		if !ok {
			return nil
		}
		r.c.lines.Add(1)
		r.c.lag.Store(int64(at.Sub(t)))
	}
}
