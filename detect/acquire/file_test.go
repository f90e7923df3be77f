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
	pending  string
	src      Source
	out      chan detect.Line
	cancel   context.CancelFunc
	done     chan error
	// opts and tune apply to each source start builds.
	opts []Option
	tune func(Source)
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
	src, err := New(h.cfg, h.stateDir, h.opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.tune != nil {
		h.tune(src)
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

func (h *fileHarness) rename(from, to string) {
	h.t.Helper()
	if err := os.Rename(h.path(from), h.path(to)); err != nil {
		h.t.Fatal(err)
	}
}

// fileStep changes the files; the harness checks the lines after each step.
type fileStep func(h *fileHarness)

func writeStep(name string, n int) fileStep { return func(h *fileHarness) { h.write(name, n) } }

var fileScenarios = []struct {
	name  string
	glob  bool
	steps []fileStep
}{
	{name: "rename rotation", steps: []fileStep{
		writeStep("app.log", 4),
		func(h *fileHarness) {
			// logrotate's default: rename, the daemon writes on to the old
			// file until it reopens, then a new file appears.
			h.rename("app.log", "app.log.1")
			h.write("app.log.1", 3)
			h.write("app.log", 2)
		},
		writeStep("app.log", 3),
	}},
	{name: "rename rotation, late writer", steps: []fileStep{
		writeStep("app.log", 2),
		func(h *fileHarness) {
			// The daemon writes to the rotated file several polls after
			// the rename, before the new file appears.
			h.rename("app.log", "app.log.1")
			time.Sleep(5 * h.cfg.PollInterval)
			h.write("app.log.1", 2)
		},
		writeStep("app.log", 2),
	}},
	{name: "copytruncate", steps: []fileStep{
		writeStep("app.log", 5),
		func(h *fileHarness) {
			data, err := os.ReadFile(h.path("app.log"))
			if err != nil {
				h.t.Fatal(err)
			}
			if err := os.WriteFile(h.path("app.log.1"), data, 0o644); err != nil {
				h.t.Fatal(err)
			}
			if err := os.Truncate(h.path("app.log"), 0); err != nil {
				h.t.Fatal(err)
			}
			h.write("app.log", 2)
		},
		writeStep("app.log", 3),
	}},
	{name: "copytruncate refilled past the old offset", steps: []fileStep{
		writeStep("app.log", 2),
		func(h *fileHarness) {
			if err := os.Truncate(h.path("app.log"), 0); err != nil {
				h.t.Fatal(err)
			}
			h.write("app.log", 6)
		},
		writeStep("app.log", 1),
	}},
	{name: "delete and recreate", steps: []fileStep{
		writeStep("app.log", 4),
		func(h *fileHarness) {
			if err := os.Remove(h.path("app.log")); err != nil {
				h.t.Fatal(err)
			}
			h.write("app.log", 3)
		},
		writeStep("app.log", 2),
	}},
	{name: "glob gains a file", glob: true, steps: []fileStep{
		writeStep("app.log", 3),
		writeStep("other.log", 3),
		writeStep("app.log", 2),
		writeStep("other.log", 1),
	}},
	{name: "partial line in two halves", steps: []fileStep{
		writeStep("app.log", 2),
		func(h *fileHarness) {
			f, err := os.OpenFile(h.path("app.log"), os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				h.t.Fatal(err)
			}
			defer f.Close()
			full := lineText(h.next) + "\n"
			if _, err := f.WriteString(full[:9]); err != nil {
				h.t.Fatal(err)
			}
			if h.cancel != nil {
				// Let the running source read the half before the rest.
				h.expectQuiet()
			}
			h.pending = full[9:]
		},
		func(h *fileHarness) {
			f, err := os.OpenFile(h.path("app.log"), os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				h.t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(h.pending); err != nil {
				h.t.Fatal(err)
			}
			h.next++
			h.writeTo(f, 2)
		},
	}},
}

// TestFileScenarios runs each scenario straight through, then once with a
// clean restart around each step (the step happens while moat is down), with
// inotify and with polling only. Every line must arrive exactly once, in order.
func TestFileScenarios(t *testing.T) {
	for _, sc := range fileScenarios {
		for _, poll := range []bool{false, true} {
			for restartAt := -1; restartAt < len(sc.steps); restartAt++ {
				if restartAt == 0 {
					continue // step 0 before the first start is the plain run
				}
				name := fmt.Sprintf("%s/poll=%v/restart=%d", sc.name, poll, restartAt)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h := newFileHarness(t, func(c *Config) {
						c.PollWithoutInotify = poll
						if sc.glob {
							c.Filenames = []string{filepath.Join(filepath.Dir(c.Filenames[0]), "*.log")}
						}
					})
					h.start()
					for i, step := range sc.steps {
						if i == restartAt {
							h.stop()
							step(h)
							h.start()
						} else {
							step(h)
						}
						h.expect()
					}
				})
			}
		}
	}
}

func TestFileCutsLongLines(t *testing.T) {
	h := newFileHarness(t, func(c *Config) { c.MaxLineLength = 32 })
	long := strings.Repeat("a", 100)
	if err := os.WriteFile(h.path("app.log"), []byte("short\n"+long+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	for _, want := range []string{"short", long[:32], "after"} {
		select {
		case l := <-h.out:
			if l.Raw != want {
				t.Fatalf("got %q, want %q", l.Raw, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("timeout waiting for %q", want)
		}
	}
	h.stop() // counters are updated after the send returns
	if st := h.src.Stats(); st.Cut != 1 || st.Lines != 3 || st.Bytes != uint64(6+101+6) {
		t.Fatalf("stats: %+v", st)
	}
}

func TestFileFirstStartAtTail(t *testing.T) {
	h := newFileHarness(t, func(c *Config) { c.Start = "tail" })
	h.write("app.log", 5)
	h.seen = h.next // the first start skips what is there
	h.start()
	h.expectQuiet()
	h.write("app.log", 2)
	h.expect()
	h.stop()
	// A restart resumes from the saved position, not the tail.
	h.write("app.log", 2)
	h.start()
	h.expect()
}

func TestFileUnreadableIsCounted(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads mode-000 files; use a directory where a file is expected.
		h := newFileHarness(t, func(c *Config) {
			c.Filenames = append(c.Filenames, filepath.Join(filepath.Dir(c.Filenames[0]), "bad.log"))
		})
		if err := os.Mkdir(h.path("bad.log"), 0o755); err != nil {
			t.Fatal(err)
		}
		h.write("app.log", 2)
		h.start()
		h.expect()
		return
	}
	h := newFileHarness(t, func(c *Config) {
		c.Filenames = append(c.Filenames, filepath.Join(filepath.Dir(c.Filenames[0]), "bad.log"))
	})
	if err := os.WriteFile(h.path("bad.log"), []byte("x\n"), 0); err != nil {
		t.Fatal(err)
	}
	h.write("app.log", 2)
	h.start()
	h.expect()
	if st := h.src.Stats(); st.Errors == 0 || st.LastError == nil {
		t.Fatalf("unreadable file not counted: %+v", st)
	}
}
