package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayDamagedInput: a truncated gzip makes moat replay fail (exit 1)
// with a message naming the file and where it broke, after printing what
// it could read; a line cut at the length limit draws a warning.
func TestReplayDamagedInput(t *testing.T) {
	dir := t.TempDir()
	var log strings.Builder
	for range 500 {
		log.WriteString("Nov 25 06:31:17 web1 sshd[2311]: Invalid user admin from 198.18.0.7 port 40000\n")
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(log.String()))
	zw.Close()
	gz := filepath.Join(dir, "auth.log.2.gz")
	must(t, os.WriteFile(gz, b.Bytes()[:b.Len()/2], 0o644))
	long := filepath.Join(dir, "long.log")
	must(t, os.WriteFile(long, []byte(strings.Repeat("x", 70*1024)+"\n"), 0o644))

	code, out, errOut := runMoat(t, "", "replay", "-o", "json", "--year", "2026", gz)
	if code != exitFailure || !strings.Contains(errOut, gz) || !strings.Contains(errOut, "broken after line") || !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Fatalf("truncated gzip: exit %d, stdout %.40q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runMoat(t, "", "replay", "-o", "json", "--year", "2026", long)
	if code != exitOK || !strings.Contains(errOut, "1 lines longer than") {
		t.Fatalf("cut line: exit %d, stderr %q", code, errOut)
	}
}
