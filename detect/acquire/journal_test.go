package acquire

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/coreos/go-systemd/v22/sdjournal"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

// Journald tests run against a private journald: the test binary re-runs
// itself under `unshare -m` (a Go process is multi-threaded, so it cannot
// unshare its own mount namespace), mounts tmpfs over the journal
// directories, starts systemd-journald there and runs the child test, which
// is skipped when run directly.
const journaldChildEnv = "MOAT_ACQUIRE_JOURNALD_CHILD"

// runJournaldChild runs test name in a private mount namespace and returns
// its output; the child must pass.
func runJournaldChild(tb testing.TB, name string) string {
	tb.Helper()
	testutil.RequireRoot(tb)
	if _, err := exec.LookPath("unshare"); err != nil {
		tb.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private",
		os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), journaldChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("child %s: %v\n%s", name, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		tb.Fatalf("child %s did not pass:\n%s", name, out)
	}
	return string(out)
}

// inJournaldChild sets up the private journald, or skips when the test was
// not started by runJournaldChild. It returns the journald process.
func inJournaldChild(t *testing.T) *os.Process {
	t.Helper()
	if os.Getenv(journaldChildEnv) == "" {
		t.Skip("runs only inside the private mount namespace its parent test creates")
	}
	for _, d := range []string{"/run/systemd/journal", "/run/log", "/var/log/journal"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, "mount", "-t", "tmpfs", "tmpfs", d)
	}
	conf := filepath.Join(t.TempDir(), "journald.conf")
	err := os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"+
		"ReadKMsg=no\nRuntimeMaxFileSize=1M\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nForwardToKMsg=no\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/systemd/journald.conf"); err != nil {
		t.Fatalf("no journald.conf to bind over: %v", err)
	}
	run(t, "mount", "--bind", conf, "/etc/systemd/journald.conf")
	if _, err := os.Stat("/etc/systemd/journald.conf.d"); err == nil {
		run(t, "mount", "-t", "tmpfs", "tmpfs", "/etc/systemd/journald.conf.d")
	}
	jd := exec.Command("/lib/systemd/systemd-journald")
	if err := jd.Start(); err != nil {
		t.Fatalf("start journald: %v", err)
	}
	t.Cleanup(func() {
		jd.Process.Kill()
		jd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("journald socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return jd.Process
}

func run(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

type journalRun struct {
	t      testing.TB
	src    Source
	out    chan detect.Line
	cancel context.CancelFunc
	done   chan error
}

func startJournal(t testing.TB, cfg Config, stateDir string) *journalRun {
	t.Helper()
	return startJournalOpts(t, cfg, stateDir)
}

func startJournalOpts(t testing.TB, cfg Config, stateDir string, opts ...Option) *journalRun {
	t.Helper()
	src, err := New(cfg, stateDir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &journalRun{t: t, src: src, out: make(chan detect.Line), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Stream(ctx, r.out) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// positioned waits until the source has fixed its start: what is written
// from then on must all be read.
func (r *journalRun) positioned() {
	r.t.Helper()
	select {
	case <-r.src.(Positioner).Positioned():
	case <-time.After(10 * time.Second):
		r.t.Fatal("the source found no start position in 10s")
	}
}

func (r *journalRun) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Fatalf("Stream: %v", err)
	}
	r.done <- nil // for the cleanup
}

// receive takes n lines and checks they are messages from..from+n-1.
func (r *journalRun) receive(ident string, from, n int) {
	r.t.Helper()
	re := regexp.MustCompile(`^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ ` + ident + `\[\d+\]: message (-?\d+)$`)
	for i := from; i < from+n; i++ {
		timeout := time.After(10 * time.Second) // without progress
		select {
		case l := <-r.out:
			m := re.FindStringSubmatch(l.Raw)
			if m == nil {
				r.t.Fatalf("line %q is not journalctl's short format for %s", l.Raw, ident)
			}
			if got, _ := strconv.Atoi(m[1]); got != i {
				r.t.Fatalf("got message %d, want %d (%q); the journal holds: %s", got, i, l.Raw, journalHolds(ident, i))
			}
			if l.Module != KindJournal || l.Src != ident || l.Labels["type"] != "syslog" ||
				l.Labels["SYSLOG_IDENTIFIER"] != ident || l.Labels["_PID"] == "" || l.Time.IsZero() || l.ReadAt.Before(l.Time) {
				r.t.Fatalf("line fields: %+v", l)
			}
		case err := <-r.done:
			r.t.Fatalf("source ended early: %v", err)
		case <-timeout:
			r.t.Fatalf("timeout waiting for message %d of %s; stats %+v; the journal holds: %s", i, ident, r.src.Stats(), journalHolds(ident, i))
		}
	}
}

func (r *journalRun) quiet() {
	r.t.Helper()
	select {
	case l := <-r.out:
		r.t.Fatalf("unexpected extra line %q", l.Raw)
	case <-time.After(300 * time.Millisecond):
	}
}

func sendJournal(tb testing.TB, ident string, from, n int, noise string) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		if err := journal.Send(fmt.Sprintf("message %d", i), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": ident}); err != nil {
			tb.Fatal(err)
		}
		if noise != "" {
			if err := journal.Send(fmt.Sprintf("message %d", i), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": noise}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

func journalConfig(ident string) Config {
	c := defaultConfig()
	c.Source = KindJournal
	c.JournalctlFilter = []string{"SYSLOG_IDENTIFIER=" + ident}
	c.Labels = map[string]string{"type": "syslog"}
	c.Name = "journal-" + ident
	return c
}

func TestJournald(t *testing.T) {
	runJournaldChild(t, "TestJournaldChild")
}

// TestJournaldChild: live entries arrive, matches filter, a clean restart
// (including one in the middle of a burst) resumes with no loss and no
// duplicate, and a head start reads the whole history.
func TestJournaldChild(t *testing.T) {
	_ = inJournaldChild(t)
	ident, noise := testutil.RandName("moatt", 6), testutil.RandName("moatn", 6)
	state := t.TempDir()
	cfg := journalConfig(ident)

	// Entries from before the first start are not read (start: tail).
	sendJournal(t, ident, -5, 5, "")
	time.Sleep(50 * time.Millisecond)
	r := startJournal(t, cfg, state)
	r.positioned()
	sendJournal(t, ident, 0, 50, noise)
	r.receive(ident, 0, 50)
	r.quiet()
	r.stop()
	if st := r.src.Stats(); st.Lines != 50 || st.Errors != 0 || st.Bytes == 0 {
		t.Fatalf("stats: %+v", st)
	}

	// Written while moat is down.
	sendJournal(t, ident, 50, 30, noise)
	r = startJournal(t, cfg, state)
	r.receive(ident, 50, 30)
	r.quiet()

	// Stopped in the middle of a burst: the source is blocked on the
	// channel with an undelivered entry when it is cancelled.
	sendJournal(t, ident, 80, 100, noise)
	r.receive(ident, 80, 40)
	r.stop()
	r = startJournal(t, cfg, state)
	r.receive(ident, 120, 60)
	r.quiet()
	r.stop()

	// start: head, mode cat, fresh state: the whole history, then Stream ends.
	cat := cfg
	cat.Start, cat.Mode = "head", "cat"
	r = startJournal(t, cat, t.TempDir())
	r.receive(ident, -5, 185)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatal(err)
		}
		r.done <- nil
	case l := <-r.out:
		t.Fatalf("extra line %q", l.Raw)
	case <-time.After(5 * time.Second):
		t.Fatal("mode cat did not end")
	}

	// Cold replay of the journal directory, as copied from another host.
	rp, err := OpenJournalDir("/run/log/journal", []string{"SYSLOG_IDENTIFIER=" + ident}, map[string]string{"type": "syslog"})
	if err != nil {
		t.Fatal(err)
	}
	ls := collectReplay(t, rp)
	if len(ls) != 185 {
		t.Fatalf("journal dir replay: %d lines, want 185", len(ls))
	}
	for i, l := range ls {
		if want := fmt.Sprintf("]: message %d", i-5); !strings.HasSuffix(l.Raw, want) || l.Labels["SYSLOG_IDENTIFIER"] != ident {
			t.Fatalf("replay line %d: %q", i, l.Raw)
		}
	}
	if p := rp.Progress(); p.Lines != 185 || !p.Done || p.BytesRead == 0 || p.BytesTotal != -1 {
		t.Fatalf("progress: %+v", p)
	}
}

// percentile returns the q-quantile of sorted durations.
func percentile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

func TestJournaldRotationAndVacuum(t *testing.T) {
	runJournaldChild(t, "TestJournaldRotationAndVacuumChild")
}

// TestJournaldRotationAndVacuumChild follows the journal across size-based
// rotations (1M files) and forced ones, then restarts after the files
// holding its saved cursor were vacuumed: no entry lost, none repeated.
func TestJournaldRotationAndVacuumChild(t *testing.T) {
	jd := inJournaldChild(t)
	ident := testutil.RandName("moatr", 6)
	state := t.TempDir()
	cfg := journalConfig(ident)
	r := startJournal(t, cfg, state)
	r.positioned()

	// About 20 MB of entries with 10% ours: a dozen rotations while following.
	pad := strings.Repeat("x", 900)
	done := make(chan error, 1)
	go func() {
		for i := range 20000 {
			if i%10 == 0 {
				if err := journal.Send(fmt.Sprintf("message %d", i/10), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": ident}); err != nil {
					done <- err
					return
				}
			}
			if err := journal.Send(pad, journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "moat-noise"}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	r.receive(ident, 0, 2000)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("/run/log/journal/*/system@*.journal")
	if len(files) < 3 {
		t.Fatalf("only %d archived journal files: no rotation happened", len(files))
	}
	// A forced rotation (SIGUSR2, as journalctl --rotate) while following.
	if err := jd.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	sendJournal(t, ident, 2000, 20, "")
	r.receive(ident, 2000, 20)
	r.quiet()
	r.stop()

	// Down: rotate, then vacuum every archived file, the one holding the
	// saved cursor included, and write more.
	if err := jd.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	files, _ = filepath.Glob("/run/log/journal/*/system@*.journal")
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	sendJournal(t, ident, 2020, 30, "")
	time.Sleep(100 * time.Millisecond)
	r = startJournal(t, cfg, state)
	r.receive(ident, 2020, 30)
	r.quiet()
	r.stop()
	if st := r.src.Stats(); st.Lines != 30 {
		t.Fatalf("stats after vacuum: %+v", st)
	}
}

// journalHolds reads the journal afresh, for failure messages: how many
// entries ident has and whether message i is among them.
func journalHolds(ident string, i int) string {
	j, err := sdjournal.NewJournal()
	if err != nil {
		return err.Error()
	}
	defer j.Close()
	j.AddMatch("SYSLOG_IDENTIFIER=" + ident)
	j.SeekHead()
	n, found := 0, false
	for {
		k, err := j.Next()
		if err != nil || k == 0 {
			break
		}
		n++
		if m, _ := j.GetDataValue("MESSAGE"); m == fmt.Sprintf("message %d", i) {
			found = true
		}
	}
	files, _ := filepath.Glob("/run/log/journal/*/*")
	return fmt.Sprintf("%d entries, message %d present: %v, %d files", n, i, found, len(files))
}
