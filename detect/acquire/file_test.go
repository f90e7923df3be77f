package acquire

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

// fileHarness drives a file source over numbered lines and checks that each
// arrives exactly once, in order, across rotations and restarts.
type fileHarness struct {
	t        *testing.T
	dir      string
	stateDir string
	cfg      Config
	next     int // number of the next line to write
	seen     int // number of the next line expected
	src      Source
	out      chan detect.Line
	cancel   context.CancelFunc
	done     chan error
}

func newFileHarness(t *testing.T, mut func(*Config)) *fileHarness {
	dir := t.TempDir()
	h := &fileHarness{t: t, dir: dir, stateDir: filepath.Join(dir, "state")}
	h.cfg = defaultConfig()
	h.cfg.Source = KindFile
	h.cfg.Filenames = []string{filepath.Join(dir, "app.log")}
	h.cfg.Labels = map[string]string{"type": "syslog"}
	h.cfg.PollInterval = 50 * time.Millisecond
	h.cfg.Start = "head"
	if mut != nil {
		mut(&h.cfg)
	}
	t.Cleanup(func() {
		if h.cancel != nil {
			h.cancel()
			<-h.done
		}
	})
	return h
}

func (h *fileHarness) path(name string) string { return filepath.Join(h.dir, name) }

func (h *fileHarness) start() {
	h.t.Helper()
	src, err := New(h.cfg, h.stateDir)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.src, h.out, h.cancel, h.done = src, make(chan detect.Line), cancel, make(chan error, 1)
	go func() { h.done <- src.Stream(ctx, h.out) }()
}

// stop cancels the source, as a clean shutdown does.
func (h *fileHarness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Stream: %v", err)
	}
	h.cancel = nil
}

func lineText(n int) string { return fmt.Sprintf("line %05d some payload", n) }

// write appends n numbered lines to name through a fresh open, as a logger
// that opens per write does.
func (h *fileHarness) write(name string, n int) {
	h.t.Helper()
	f, err := os.OpenFile(h.path(name), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	h.writeTo(f, n)
}

func (h *fileHarness) writeTo(f *os.File, n int) {
	h.t.Helper()
	var b strings.Builder
	for range n {
		b.WriteString(lineText(h.next) + "\n")
		h.next++
	}
	if _, err := f.WriteString(b.String()); err != nil {
		h.t.Fatal(err)
	}
}

// expect receives every line written so far and checks numbering and order.
func (h *fileHarness) expect() {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for h.seen < h.next {
		select {
		case l := <-h.out:
			if want := lineText(h.seen); l.Raw != want {
				h.t.Fatalf("got line %q, want %q", l.Raw, want)
			}
			if l.Module != KindFile || l.Labels["type"] != "syslog" || !l.Process || l.ReadAt.IsZero() {
				h.t.Fatalf("line fields: %+v", l)
			}
			h.seen++
		case err := <-h.done:
			h.t.Fatalf("source ended early: %v", err)
		case <-timeout:
			h.t.Fatalf("timeout: got lines up to %d, want up to %d", h.seen, h.next)
		}
	}
	h.expectQuiet()
}

// expectQuiet checks that no further (duplicate) line arrives.
func (h *fileHarness) expectQuiet() {
	h.t.Helper()
	select {
	case l := <-h.out:
		h.t.Fatalf("unexpected extra line %q (expected none after %d)", l.Raw, h.seen)
	case <-time.After(150 * time.Millisecond):
	}
}

func TestFileFollowBasic(t *testing.T) {
	h := newFileHarness(t, nil)
	h.write("app.log", 3)
	h.start()
	h.expect()
	h.write("app.log", 5)
	h.expect()
	h.stop()
	h.write("app.log", 2)
	h.start()
	h.expect()
	if st := h.src.Stats(); st.Lines != 2 || st.Bytes == 0 {
		t.Fatalf("stats after restart: %+v", st)
	}
}
