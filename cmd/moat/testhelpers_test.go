package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// repoRoot is the checkout's top directory (tests run in cmd/moat).
func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemonConfig is the configuration the daemon tests run: state, socket
// and data under dir, the checkout's shipped content from root, file
// sources from acquis, no bouncer API and a short verify interval.
func daemonConfig(dir, root, acquis string) string {
	return fmt.Sprintf(`state_dir: %[1]s/state
api:
  socket: %[1]s/moat.sock
  listen: ""
metrics:
  listen: 127.0.0.1:9641
hub:
  dir: %[2]s/packaging/hub
  patterns: %[2]s/packaging/patterns
  data: %[1]s/data
acquisition:
  dir: %[3]s
profiles: %[2]s/packaging/profiles.yaml
enforce:
  verify_interval: 2s
`, dir, root, acquis)
}
