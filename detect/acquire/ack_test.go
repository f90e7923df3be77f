package acquire

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

// ackChildEnv names the directory TestFileAckChild works in; the child is
// skipped when it is unset.
const ackChildEnv = "MOAT_ACQUIRE_ACK_CHILD"

func ackFileConfig(dir string) Config {
	c := defaultConfig()
	c.Source = KindFile
	c.Filenames = []string{filepath.Join(dir, "app.log")}
	c.Labels = map[string]string{"type": "syslog"}
	c.PollInterval = 50 * time.Millisecond
	c.Start = "head"
	return c
}

// TestFileAcksSurviveAbruptStop: a consumer acknowledges lines up to 40 of
// 100 (then, out of order, line 10); the process is killed without a
// graceful save. The restarted source resumes right after line 40: no line
// skipped, none repeated beyond the unacknowledged ones. A run that
// acknowledges nothing and stops cleanly saves nothing past that either.
func TestFileAcksSurviveAbruptStop(t *testing.T) {
	h := newFileHarness(t, nil)
	h.write("app.log", 100)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileAckChild$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), ackChildEnv+"="+h.dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make(chan bool, 1)
	var outText strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outText.WriteString(sc.Text() + "\n")
			if sc.Text() == "ACKED" {
				acked <- true
			}
		}
		close(acked)
	}()
	select {
	case ok := <-acked:
		if !ok {
			cmd.Wait()
			t.Fatalf("child ended before acknowledging:\n%s", outText.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not acknowledge in 60s")
	}
	if err := cmd.Process.Kill(); err != nil { // no graceful save
		t.Fatal(err)
	}
	cmd.Wait()

	h.opts = []Option{WithAcks()}
	h.seen = 41
	h.start()
	h.expect()
	h.stop() // nothing acknowledged in this run
	h.seen = 41
	h.start()
	h.expect()
}

// TestFileAckChild is the process TestFileAcksSurviveAbruptStop kills.
func TestFileAckChild(t *testing.T) {
	dir := os.Getenv(ackChildEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestFileAcksSurviveAbruptStop")
	}
	src, err := New(ackFileConfig(dir), filepath.Join(dir, "state"), WithAcks())
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan detect.Line)
	go src.Stream(context.Background(), out)
	var ls []detect.Line
	for len(ls) < 100 {
		select {
		case l := <-out:
			ls = append(ls, l)
		case <-time.After(20 * time.Second):
			t.Fatalf("read %d of 100 lines", len(ls))
		}
	}
	ls[40].Pos.Ack()
	ls[10].Pos.Ack() // older: changes nothing
	// Several save intervals pass, with 59 lines sent and not acknowledged.
	time.Sleep(5 * StateInterval)
	os.Stdout.WriteString("ACKED\n")
	time.Sleep(time.Minute) // killed here
}

// TestFileAckAfterStopWithRotation: lines are acknowledged after Stream
// returned and kept by Checkpoint; the acknowledged line sits in a file
// rotated away, which the restart resumes before the new file.
func TestFileAckAfterStopWithRotation(t *testing.T) {
	h := newFileHarness(t, nil)
	h.opts = []Option{WithAcks()}
	h.write("app.log", 10)
	h.start()
	var ls []detect.Line
	take := func(n int) {
		for range n {
			select {
			case l := <-h.out:
				if want := lineText(h.seen); l.Raw != want {
					t.Fatalf("got %q, want %q", l.Raw, want)
				}
				if l.Pos.Source() != h.src.(detect.Acker) || l.Pos.Seq() != uint64(len(ls)+1) {
					t.Fatalf("line %d position: source %v seq %d", len(ls), l.Pos.Source(), l.Pos.Seq())
				}
				h.seen++
				ls = append(ls, l)
			case <-time.After(10 * time.Second):
				t.Fatalf("line %d did not arrive", h.seen)
			}
		}
	}
	take(10)
	h.rename("app.log", "app.log.1")
	h.write("app.log", 10)
	take(10)
	h.stop()
	ls[5].Pos.Ack()
	if err := h.src.(Checkpointer).Checkpoint(); err != nil {
		t.Fatal(err)
	}
	h.seen = 6
	h.start()
	h.expect()
}

func TestJournaldAcks(t *testing.T) {
	runJournaldChild(t, "TestJournaldAcksChild")
}

// TestJournaldAcksChild: a journal source under WithAcks saves the cursor
// of the newest acknowledged entry, not of the newest sent.
func TestJournaldAcksChild(t *testing.T) {
	_ = inJournaldChild(t)
	ident := testutil.RandName("moata", 6)
	state := t.TempDir()
	cfg := journalConfig(ident)
	r := startJournalOpts(t, cfg, state, WithAcks())
	r.positioned()
	sendJournal(t, ident, 0, 50, "")
	var ls []detect.Line
	for range 50 {
		select {
		case l := <-r.out:
			ls = append(ls, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of 50 entries", len(ls))
		}
	}
	ls[20].Pos.Ack()
	time.Sleep(3 * StateInterval)
	r.stop()
	ls[30].Pos.Ack() // after Stream returned, kept by Checkpoint
	if err := r.src.(Checkpointer).Checkpoint(); err != nil {
		t.Fatal(err)
	}
	r = startJournalOpts(t, cfg, state, WithAcks())
	r.receive(ident, 31, 19)
	r.quiet()
	r.stop()
	// Nothing acknowledged: the next start reads them again.
	r = startJournalOpts(t, cfg, state, WithAcks())
	r.receive(ident, 31, 19)
	r.quiet()
}
