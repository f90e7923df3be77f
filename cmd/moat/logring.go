package main

import (
	"context"
	"log/slog"
	"sync"
)

// Bounds of the log ring: what moat support dump gets as recent errors
// without reading the journal.
const (
	logRingLines   = 256
	logRingLineMax = 2048
)

// logRing keeps the latest warning and error lines the daemon logged,
// whatever log_level says, so a support dump has them even where the
// journal cannot be read.
type logRing struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// Write takes one formatted record; the handler writes each record in one
// call.
func (r *logRing) Write(p []byte) (int, error) {
	s := string(p)
	if len(s) > logRingLineMax {
		s = s[:logRingLineMax] + "...\n"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lines == nil {
		r.lines = make([]string, logRingLines)
	}
	r.lines[r.next] = s
	r.next = (r.next + 1) % logRingLines
	r.full = r.full || r.next == 0
	return len(p), nil
}

// Recent returns the kept lines, oldest first; none for a nil ring.
func (r *logRing) Recent() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	return append(append([]string(nil), r.lines[r.next:]...), r.lines[:r.next]...)
}

// ringHandler sends every record to the process's handler as configured,
// and warnings and errors also to a ring.
type ringHandler struct {
	main, ring slog.Handler
	lines      *logRing
}

func newRingHandler(main slog.Handler, lines *logRing) *ringHandler {
	return &ringHandler{main: main, lines: lines, ring: slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelWarn})}
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.main.Enabled(ctx, l) || h.ring.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.ring.Enabled(ctx, r.Level) {
		h.ring.Handle(ctx, r.Clone())
	}
	if h.main.Enabled(ctx, r.Level) {
		return h.main.Handle(ctx, r)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ringHandler{main: h.main.WithAttrs(as), ring: h.ring.WithAttrs(as), lines: h.lines}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	return &ringHandler{main: h.main.WithGroup(name), ring: h.ring.WithGroup(name), lines: h.lines}
}

// logRingOf is the ring of a logger a.logger built, nil for another.
func logRingOf(l *slog.Logger) *logRing {
	if h, ok := l.Handler().(*ringHandler); ok {
		return h.lines
	}
	return nil
}
