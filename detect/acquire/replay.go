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
	"sync/atomic"

	"github.com/coreos/go-systemd/v22/sdjournal"

	"github.com/moatsec/moat/detect"
)

// Progress is how far a replay got, for a progress bar.
type Progress struct {
	// BytesRead is how much of the input was consumed: on-disk bytes for
	// files (compressed bytes for gzip), message bytes for a journal.
	BytesRead int64
	// BytesTotal is the input's size in the same unit, -1 when unknown
	// (stdin from a pipe, journals).
	BytesTotal int64
	Lines      uint64
	// Done is true once Stream has read every input.
	Done bool
}

// Replay reads cold logs once, in order: files (plain or gzip, told by
// their magic bytes, "-" for stdin) or a journal directory. It is a Source
// whose Stream returns nil at the end of its input.
type Replay struct {
	name   string
	labels map[string]string
	max    int
	inputs []*replayInput
	total  int64
	read   atomic.Int64
	done   atomic.Bool
	c      counters

	journal *sdjournal.Journal
	fields  []string
}

type replayInput struct {
	src string // Line.Src
	f   *os.File
	r   io.Reader // what is read: f, or stdin
}

// OpenReplay opens every path now, so a missing file fails before any line
// is read. labels become every line's Labels (the "type" one selects the
// parsers). Close releases the files.
func OpenReplay(paths []string, labels map[string]string) (*Replay, error) {
	return openReplay(paths, labels, os.Stdin)
}

// openReplay reads "-" from stdin, which tests replace with a pipe.
func openReplay(paths []string, labels map[string]string, stdinR io.Reader) (*Replay, error) {
	if len(paths) == 0 {
		return nil, errors.New("replay: no input")
	}
	r := &Replay{name: "replay:" + strings.Join(paths, ","), labels: labels, max: DefaultMaxLineLength}
	stdin := false
	for _, p := range paths {
		in := &replayInput{src: p}
		if p == "-" {
			if stdin {
				r.Close()
				return nil, errors.New("replay: stdin (-) given twice")
			}
			stdin = true
			in.src, in.r = "stdin", stdinR
			r.inputs = append(r.inputs, in)
			if f, ok := stdinR.(*os.File); ok {
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && r.total >= 0 {
					r.total += fi.Size() // stdin redirected from a file
					continue
				}
			}
			r.total = -1 // a pipe or terminal: size unknown
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("replay: %w", err)
		}
		in.f, in.r = f, f
		r.inputs = append(r.inputs, in)
		fi, err := in.f.Stat()
		switch {
		case err != nil || !fi.Mode().IsRegular():
			r.total = -1 // a pipe or terminal: size unknown
		case r.total >= 0:
			r.total += fi.Size()
		}
		if err == nil && fi.IsDir() {
			r.Close()
			return nil, fmt.Errorf("replay: %s is a directory (use OpenJournalDir for a journal)", p)
		}
	}
	return r, nil
}

// OpenJournalDir reads every entry of the journal files under dir that
// matches (journalctl syntax: FIELD=value, "+" for OR), oldest first, as the
// lines the journalctl source would produce.
func OpenJournalDir(dir string, matches []string, labels map[string]string) (*Replay, error) {
	j, err := openJournal(dir, matches)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", dir, err)
	}
	if err := j.SeekHead(); err != nil {
		j.Close()
		return nil, fmt.Errorf("replay %s: seek head: %w", dir, err)
	}
	return &Replay{name: "replay:journal:" + dir, labels: labels, max: DefaultMaxLineLength, total: -1, journal: j}, nil
}

// Name identifies the replay.
func (r *Replay) Name() string { return r.name }

// Stats counts what the replay read so far.
func (r *Replay) Stats() Stats { return r.c.snapshot() }

// Progress is safe to call from another goroutine while Stream runs.
func (r *Replay) Progress() Progress {
	return Progress{BytesRead: r.read.Load(), BytesTotal: r.total, Lines: r.c.lines.Load(), Done: r.done.Load()}
}

// Close releases the opened files; stdin is left open.
func (r *Replay) Close() error {
	var errs []error
	for _, in := range r.inputs {
		if in.f != nil {
			errs = append(errs, in.f.Close())
		}
	}
	r.inputs = nil
	if r.journal != nil {
		errs = append(errs, r.journal.Close())
		r.journal = nil
	}
	return errors.Join(errs...)
}

// Stream sends every line of the inputs, in order, and returns nil at their
// end or when ctx is cancelled. An unreadable or corrupt input is counted
// in Stats and skipped; the others are still read.
func (r *Replay) Stream(ctx context.Context, out chan<- detect.Line) error {
	defer r.done.Store(true)
	if r.journal != nil {
		return r.streamJournal(ctx, out)
	}
	for _, in := range r.inputs {
		if err := r.streamFile(ctx, out, in); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.c.fail(fmt.Errorf("replay %s: %w", in.src, err))
		}
	}
	return nil
}

// countingReader counts the bytes taken from the file, so progress is in
// on-disk bytes also for compressed input.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (r *Replay) streamFile(ctx context.Context, out chan<- detect.Line, in *replayInput) error {
	br := bufio.NewReaderSize(countingReader{r: in.r, n: &r.read}, readBufSize)
	var src io.Reader = br
	// Magic bytes, not the name: rotated logs are often compressed under
	// names that do not say so, and stdin has no name.
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	sp := splitter{max: r.max}
	stopped := false
	emit := func(line []byte, cut bool, _ int) bool {
		l := detect.Line{Raw: string(line), Src: in.src, Module: KindFile, Labels: r.labels, Process: true}
		if _, ok := sendAt(ctx, out, l); !ok {
			stopped = true
			return false
		}
		r.c.lines.Add(1)
		if cut {
			r.c.cut.Add(1)
		}
		return true
	}
	buf := make([]byte, readBufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.c.bytes.Add(uint64(n))
			if !sp.feed(buf[:n], emit) {
				if stopped {
					return ctx.Err()
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A corrupt gzip tail: the lines before it were sent; the
			// partial line at the break is dropped, not guessed at.
			return err
		}
	}
	if last := sp.flush(); len(last) > 0 {
		emit(last, false, 0)
		if stopped {
			return ctx.Err()
		}
	}
	return nil
}

func (r *Replay) streamJournal(ctx context.Context, out chan<- detect.Line) error {
	er := newEntryReader(r.journal, r.labels, r.fields, r.max, &r.c)
	fails := 0
	for ctx.Err() == nil {
		n, err := r.journal.Next()
		if err != nil {
			// A corrupt journal file: count it; give up only when the
			// journal will not move on at all.
			r.c.fail(fmt.Errorf("replay journal: %w", err))
			if fails++; fails > 100 {
				return nil
			}
			continue
		}
		fails = 0
		if n == 0 {
			return nil
		}
		l, _ := er.entry()
		if l.Src == "" {
			continue
		}
		r.read.Store(int64(r.c.bytes.Load()))
		if _, ok := sendAt(ctx, out, l); !ok {
			return nil
		}
		r.c.lines.Add(1)
	}
	return nil
}
