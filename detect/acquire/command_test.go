package acquire

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

type commandRun struct {
	t    *testing.T
	src  *commandSource
	out  chan detect.Line
	stop context.CancelFunc
	done chan error
}

// startCommand runs sh -c script as a command source until the test ends,
// with a fast restart policy.
func startCommand(t *testing.T, script string, mut func(*Config), opts ...Option) *commandRun {
	t.Helper()
	cfg := defaultConfig()
	cfg.Source = KindCommand
	cfg.Labels = map[string]string{"type": "test"}
	cfg.Command = []string{"/bin/sh", "-c", script}
	if mut != nil {
		mut(&cfg)
	}
	src, err := New(cfg, "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	cs := src.(*commandSource)
	cs.restartMin, cs.restartMax, cs.grace = 10*time.Millisecond, 40*time.Millisecond, 300*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	r := &commandRun{t: t, src: cs, out: make(chan detect.Line, 1024), stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Stream(ctx, r.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Stream did not return")
		}
	})
	return r
}

func (r *commandRun) next() detect.Line {
	r.t.Helper()
	select {
	case l := <-r.out:
		return l
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no line; stats %+v", r.src.Stats())
		return detect.Line{}
	}
}

// wait ends the source and returns what Stream returned, failing after 5s.
func (r *commandRun) wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("Stream did not return")
		return nil
	}
}

// alive reports whether the process pid exists (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func readPIDs(t *testing.T, path string) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if f := strings.Fields(string(b)); len(f) >= 2 {
			var pids []int
			for _, s := range f {
				p, err := strconv.Atoi(s)
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, p)
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pids in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCommandStopKillsGroup: the program's lines arrive as they are
// written; cancelling stops it and what it started, and a program that
// ignores SIGTERM is killed after the grace period.
func TestCommandStopKillsGroup(t *testing.T) {
	for _, trap := range []string{"", `trap "" TERM;`} {
		t.Run(fmt.Sprintf("trap=%q", trap), func(t *testing.T) {
			pids := filepath.Join(t.TempDir(), "pids")
			r := startCommand(t, trap+`sleep 300 & echo $$ $! > `+pids+`; printf 'a\nb\n'; wait`, nil)
			for _, want := range []string{"a", "b"} {
				l := r.next()
				if l.Raw != want || l.Module != KindCommand || l.Src != "/bin/sh" || l.Labels["type"] != "test" || !l.Process {
					t.Fatalf("line %+v, want %q", l, want)
				}
			}
			ps := readPIDs(t, pids)
			began := time.Now()
			r.stop()
			if err := r.wait(); err != nil {
				t.Fatal(err)
			}
			if trap != "" && time.Since(began) < r.src.grace {
				t.Fatalf("stopped in %s, before the grace period: SIGTERM was not ignored?", time.Since(began))
			}
			deadline := time.Now().Add(2 * time.Second)
			for _, p := range ps {
				for alive(p) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if alive(p) {
					t.Fatalf("process %d outlived the source", p)
				}
			}
			if r.src.starts.Load() != 1 {
				t.Fatalf("%d starts", r.src.starts.Load())
			}
		})
	}
}

// TestCommandStopEscapedChild: a process that left the program's group
// (setsid) and holds its stdout does not keep a stop waiting.
func TestCommandStopEscapedChild(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skipf("SKIP: no setsid(1): %v", err)
	}
	pids := filepath.Join(t.TempDir(), "pids")
	r := startCommand(t, `setsid sleep 300 & echo $$ $! > `+pids+`; echo up; wait`, nil)
	r.next()
	ps := readPIDs(t, pids)
	defer syscall.Kill(ps[1], syscall.SIGKILL)
	// Stop only once the child is in a session of its own.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if pgid, err := syscall.Getpgid(ps[1]); err == nil && pgid == ps[1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never left the program's group")
		}
	}
	began := time.Now()
	r.stop()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 3*r.src.grace+time.Second {
		t.Fatalf("stop took %s", d)
	}
	if !alive(ps[1]) {
		t.Fatal("the escaped child died: the test tested nothing")
	}
}

// countHandler counts log records.
type countHandler struct {
	n    atomic.Int64
	last atomic.Value
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "line" {
			h.last.Store(a.Value.String())
		}
		return true
	})
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// TestCommandRestarts: a program that exits is started again, with a
// growing delay, and each exit is counted with the program's last
// stderr line; its stderr reaches the logger.
func TestCommandRestarts(t *testing.T) {
	h := &countHandler{}
	r := startCommand(t, `echo run; echo oops >&2; exit 3`, nil, WithLogger(slog.New(h)))
	for i := 0; i < 4; i++ {
		if l := r.next(); l.Raw != "run" {
			t.Fatalf("line %q", l.Raw)
		}
	}
	st := r.src.Stats()
	if st.Errors < 3 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "exit status 3 (stderr: oops)") {
		t.Fatalf("stats %+v", st)
	}
	if h.n.Load() < 3 || h.last.Load() != "oops" {
		t.Fatalf("%d stderr records, last %v", h.n.Load(), h.last.Load())
	}
}

// TestCommandStderrBounded: a program flooding stderr with long lines
// reaches the log a bounded number of times, in bounded lines, and its
// stdout still flows.
func TestCommandStderrBounded(t *testing.T) {
	h := &countHandler{}
	r := startCommand(t, `i=0; while [ $i -lt 3000 ]; do printf '%05000d\n' $i >&2; i=$((i+1)); done; echo done; sleep 300`, nil, WithLogger(slog.New(h)))
	if l := r.next(); l.Raw != "done" {
		t.Fatalf("line %q", l.Raw)
	}
	time.Sleep(100 * time.Millisecond)
	if n := r.src.stderrN.Load(); n != 3000 {
		t.Fatalf("%d stderr lines read, want 3000", n)
	}
	if n := h.n.Load(); n > stderrBurst+3 {
		t.Fatalf("%d stderr lines logged", n)
	}
	if l, _ := h.last.Load().(string); len(l) > stderrLineMax {
		t.Fatalf("logged a %d-byte line", len(l))
	}
}

// TestCommandCat: mode cat runs the program once, hands on its last line
// even without a newline, cuts long lines, and returns its failure.
func TestCommandCat(t *testing.T) {
	cat := func(c *Config) { c.Mode, c.MaxLineLength = "cat", 16 }
	r := startCommand(t, `printf 'x\n%040d\ny'`, cat)
	for _, want := range []string{"x", strings.Repeat("0", 16), "y"} {
		if l := r.next(); l.Raw != want {
			t.Fatalf("line %q, want %q", l.Raw, want)
		}
	}
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	if st := r.src.Stats(); st.Lines != 3 || st.Cut != 1 || r.src.starts.Load() != 1 {
		t.Fatalf("stats %+v, %d starts", st, r.src.starts.Load())
	}
	r = startCommand(t, `echo bad >&2; exit 2`, cat)
	if err := r.wait(); err == nil || !strings.Contains(err.Error(), "exit status 2 (stderr: bad)") {
		t.Fatalf("Stream: %v", err)
	}
	r = startCommand(t, "", func(c *Config) { cat(c); c.Command = []string{"/nonexistent/program"} })
	if err := r.wait(); err == nil || !strings.Contains(err.Error(), "start") {
		t.Fatalf("Stream: %v", err)
	}
}
