package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/moatsec/moat/internal/config"
)

// logger builds the process logger: text to stderr, which journald keeps.
// Its level lives in a.level so a reload can change it; --log-level, when
// given, wins over the configuration for the life of the process.
func (a *app) logger(cfg config.Config) (*slog.Logger, error) {
	if a.level == nil {
		a.level = new(slog.LevelVar)
	}
	if err := a.setLevel(cfg); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: a.level}
	var h slog.Handler = slog.NewTextHandler(a.stderr, opts)
	if journalStream(a.stderr, os.Getenv("JOURNAL_STREAM")) {
		h = newJournalHandler(a.stderr, opts)
	}
	// The latest warnings and errors are kept for moat support dump.
	return slog.New(newRingHandler(h, &logRing{})), nil
}

// setLevel applies the configured log level unless --log-level was given.
func (a *app) setLevel(cfg config.Config) error {
	level := cfg.LogLevel
	if a.logLevel != "" {
		level = a.logLevel
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", level)
	}
	a.level.Set(l)
	return nil
}

// journalStream reports whether w is the journald stream systemd connected
// to the service: JOURNAL_STREAM holds that stream's "device:inode", which
// a file inherited by a child (or redirected elsewhere) no longer matches.
func journalStream(w io.Writer, env string) bool {
	f, ok := w.(*os.File)
	if !ok || env == "" {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && st.Ino == ino
}

// journalHandler writes text lines prefixed with their sd-daemon priority
// ("<4>" for a warning): journald strips the prefix and files the line at
// that priority, so `journalctl -p warning -u moat` finds moat's warnings.
// Without it every line is filed at the stream's default, info. The time
// is left out: journald stamps every entry itself.
type journalHandler struct {
	slog.Handler
	out *priorityWriter
}

func newJournalHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	out := &priorityWriter{w: w}
	o := *opts
	user := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if user != nil {
			return user(groups, a)
		}
		return a
	}
	return journalHandler{Handler: slog.NewTextHandler(out, &o), out: out}
}

func (h journalHandler) Handle(ctx context.Context, r slog.Record) error {
	// The text handler writes a record in one Write; holding the lock
	// across it keeps the prefix with its own line.
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prefix = priorityPrefix(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return journalHandler{Handler: h.Handler.WithAttrs(as), out: h.out}
}

func (h journalHandler) WithGroup(name string) slog.Handler {
	return journalHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}

// priorityPrefix maps slog levels to syslog priorities (sd-daemon(3)).
func priorityPrefix(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// priorityWriter prepends the current record's priority to each write.
type priorityWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}
