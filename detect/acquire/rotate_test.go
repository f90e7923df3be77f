package acquire

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

// collectSet receives lines until numbered lines from..to-1 arrived, in
// any order, failing on a duplicate or a timeout, then checks no extra
// line follows.
func collectSet(t *testing.T, out <-chan detect.Line, from, to int) {
	t.Helper()
	want := to - from
	seen := make(map[string]bool, want)
	timeout := time.After(20 * time.Second)
	for len(seen) < want {
		select {
		case l := <-out:
			if seen[l.Raw] {
				t.Fatalf("line %q read twice", l.Raw)
			}
			seen[l.Raw] = true
		case <-timeout:
			var missing []string
			for i := from; i < to; i++ {
				if !seen[lineText(i)] {
					missing = append(missing, lineText(i))
				}
			}
			t.Fatalf("got %d of %d lines; %d missing, first %q", len(seen), want, len(missing), missing[0])
		}
	}
	for i := from; i < to; i++ {
		if !seen[lineText(i)] {
			t.Fatalf("line %q missing", lineText(i))
		}
	}
	select {
	case l := <-out:
		t.Fatalf("extra line %q", l.Raw)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestFileRenameWriterAppendsAfterRotation: logrotate renames the file and
// creates a new one, while the writer keeps appending to the renamed file
// through its open descriptor for several polls before it reopens. Every
// line must be read exactly once.
func TestFileRenameWriterAppendsAfterRotation(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			t.Parallel()
			h := newFileHarness(t, func(c *Config) { c.PollWithoutInotify = poll })
			f, err := os.OpenFile(h.path("app.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h.writeTo(f, 50)
			h.start()
			h.expect()
			h.rename("app.log", "app.log.1")
			nf, err := os.OpenFile(h.path("app.log"), os.O_CREATE|os.O_WRONLY, 0o644) // logrotate's create
			if err != nil {
				t.Fatal(err)
			}
			nf.Close()
			// The writer has not reopened yet: 10 polls of appends to the
			// renamed file, read only if the source kept it open.
			for range 10 {
				time.Sleep(h.cfg.PollInterval)
				h.writeTo(f, 20)
			}
			f.Close()
			h.write("app.log", 30) // reopened
			// Lines may interleave across the two files: check the set.
			collectSet(t, h.out, h.seen, h.next)
			h.seen = h.next
		})
	}
}

// rotate renames app.log.N to app.log.N+1 (oldest first) and app.log to
// app.log.1, compressing generation gz (0: none) as logrotate's compress
// does, with a new inode.
func (h *fileHarness) rotate(gens int, gz int) {
	h.t.Helper()
	for n := gens; n >= 1; n-- {
		h.rename(fmt.Sprintf("app.log.%d", n), fmt.Sprintf("app.log.%d", n+1))
	}
	h.rename("app.log", "app.log.1")
	if gz == 0 {
		return
	}
	name := h.path(fmt.Sprintf("app.log.%d", gz))
	data, err := os.ReadFile(name)
	if err != nil {
		h.t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(name+".gz", b.Bytes(), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		h.t.Fatal(err)
	}
}

// TestFileStoppedAcrossRotations: moat is stopped with unread lines in
// app.log, which is then rotated twice; on start the rest of the file the
// position was saved in, the middle generation (app.log.1) and the new
// live file are all read, once and in order. With compression the saved
// file only survives as app.log.2.gz, found by its first bytes.
func TestFileStoppedAcrossRotations(t *testing.T) {
	for _, gz := range []int{0, 2} {
		t.Run(fmt.Sprintf("gz=%d", gz), func(t *testing.T) {
			t.Parallel()
			h := newFileHarness(t, nil)
			h.write("app.log", 10)
			h.start()
			h.expect()
			h.stop()
			h.write("app.log", 5) // unread when the first rotation comes
			h.rotate(0, 0)
			h.write("app.log", 7) // the middle generation
			h.rotate(1, gz)
			h.write("app.log", 4)
			h.start()
			h.expect()
			h.write("app.log", 3)
			h.expect()
			h.stop()
			h.start() // nothing read twice after a clean restart
			h.expectQuiet()
		})
	}
}

// TestFileCopytruncateWhileStopped: lines written after the stop and then
// copied away by copytruncate are read from the copy, then the refilled
// file from its head.
func TestFileCopytruncateWhileStopped(t *testing.T) {
	h := newFileHarness(t, nil)
	h.write("app.log", 6)
	h.start()
	h.expect()
	h.stop()
	h.write("app.log", 4)
	data, err := os.ReadFile(h.path("app.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.path("app.log.1"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.path("app.log"), 0); err != nil {
		t.Fatal(err)
	}
	h.write("app.log", 2)
	h.start()
	h.expect()
}

// TestFileRotatedDrainedAndLetGo: a renamed file is let go once it has not
// grown for the grace period, with its unterminated last line sent; the
// saved state then no longer lists it.
func TestFileRotatedDrainedAndLetGo(t *testing.T) {
	h := newFileHarness(t, nil)
	h.write("app.log", 3)
	h.tune = func(s Source) { s.(*fileSource).grace = 200 * time.Millisecond }
	h.start()
	h.expect()
	h.rename("app.log", "app.log.1")
	h.write("app.log", 2)
	h.expect()
	f, err := os.OpenFile(h.path("app.log.1"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("tail without newline"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	select {
	case l := <-h.out:
		if l.Raw != "tail without newline" {
			t.Fatalf("got %q", l.Raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the rotated file's last line was not sent when it was let go")
	}
	h.stop()
	var st fileState
	if _, err := loadState(stateFile(h.stateDir, "file", h.src.Name()), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Draining) != 0 || len(st.Files) != 1 {
		t.Fatalf("state after the rotated file was let go: %+v", st)
	}
}
