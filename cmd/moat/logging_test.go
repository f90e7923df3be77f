package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moatsec/moat/internal/config"
)

// streamID is what systemd puts in JOURNAL_STREAM for f.
func streamID(t *testing.T, f *os.File) string {
	t.Helper()
	fi, err := f.Stat()
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestLogPriorityPrefix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream func(t *testing.T, f *os.File) string
		want   []string // line prefixes for debug, info, warn, error
	}{
		{"journald stream", streamID, []string{"<7>level=DEBUG ", "<6>level=INFO ", "<4>level=WARN ", "<3>level=ERROR "}},
		// A file a child inherited or the admin redirected to is not the
		// journal even when JOURNAL_STREAM is set: plain lines.
		{"another file", func(t *testing.T, _ *os.File) string {
			other, err := os.CreateTemp(t.TempDir(), "other")
			must(t, err)
			defer other.Close()
			return streamID(t, other)
		}, []string{"time=", "time=", "time=", "time="}},
		{"no JOURNAL_STREAM", func(*testing.T, *os.File) string { return "" }, []string{"time=", "time=", "time=", "time="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			must(t, err)
			defer f.Close()
			t.Setenv("JOURNAL_STREAM", tc.stream(t, f))
			a := &app{stderr: f, logLevel: "debug"}
			log, err := a.logger(config.Default())
			must(t, err)
			log = log.With("component", "test")
			log.Debug("d")
			log.Info("i")
			log.Warn("w", "err", "line one\nline two")
			log.Error("e")
			out, err := os.ReadFile(f.Name())
			must(t, err)
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.want), out)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, tc.want[i]) {
					t.Errorf("line %d = %q, want prefix %q", i, l, tc.want[i])
				}
			}
		})
	}
}

// TestReloadChangesLogLevel: the level follows the configuration until
// --log-level pins it.
func TestReloadChangesLogLevel(t *testing.T) {
	var buf syncBuffer
	cfg := config.Default()
	a := &app{stderr: &buf}
	log, err := a.logger(cfg)
	must(t, err)
	log.Debug("hidden")
	cfg.LogLevel = "debug"
	must(t, a.setLevel(cfg))
	log.Debug("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
		t.Fatalf("log level did not follow the configuration:\n%s", out)
	}
	a.logLevel = "error"
	must(t, a.setLevel(cfg))
	log.Warn("pinned")
	if strings.Contains(buf.String(), "pinned") {
		t.Fatal("--log-level error did not win over the configuration")
	}
}
