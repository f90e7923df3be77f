package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
)

// supportSecrets are the secrets the test configuration holds, in its
// file or in files it names; none may reach a support archive.
var supportSecrets = []string{
	"s3cr3tHookToken42", "Bearer s3cr3t-bearer-token", "s3cr3t-bearer-token", "s3cr3t-smtp-password",
	"s3cr3t-feed-pass", "s3cr3t-action-env", "s3cr3t-action-arg", "s3cr3t-fleet-pass", "s3cr3t-enrol-token",
}

// TestSupportDump runs moat (no kernel backend) with a configuration full
// of secrets, dumps, and opens the archive: every file is there, the
// goroutine dump is the daemon's, and no secret of the configuration, nor
// a bouncer key, appears anywhere. With the daemon stopped the dump still
// works and says what it could not collect.
func TestSupportDump(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP in -short mode: runs the daemon")
	}
	h := &e2eHost{dir: t.TempDir()}
	h.cfgPath = filepath.Join(h.dir, "moat.yaml")
	h.logPath = filepath.Join(h.dir, "auth.log")
	acquis := filepath.Join(h.dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(h.logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte(fmt.Sprintf(
		"source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", h.logPath)), 0o644))
	enrol := filepath.Join(h.dir, "enrol.token")
	must(t, os.WriteFile(enrol, []byte("s3cr3t-enrol-token\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	metricsAddr := ln.Addr().String()
	ln.Close()
	root := repoRoot(t)
	cfg := daemonConfig(h.dir, root, acquis) + "  nftables: {enabled: false}\n"
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9641", "listen: "+metricsAddr, 1)
	cfg += fmt.Sprintf(`server:
  enrolment_token_file: %s
fleet:
  server: https://127.0.0.1:1
  machine_id: agent-1
  password: s3cr3t-fleet-pass
feeds:
  - name: partner
    url: https://feeds:s3cr3t-feed-pass@127.0.0.1:1/list.txt
notifications:
  hook:
    kind: webhook
    url: http://127.0.0.1:1/services/T0/B0/s3cr3tHookToken42
    headers:
      Authorization: Bearer s3cr3t-bearer-token
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: 1, tls: none, username: moat, password: s3cr3t-smtp-password}
    from: moat@example.org
    to: [root@example.org]
actions:
  report:
    command: /bin/true
    args: [--token, s3cr3t-action-arg]
    env: {REPORT_TOKEN: s3cr3t-action-env}
`, enrol)
	must(t, os.WriteFile(h.cfgPath, []byte(cfg), 0o644))
	d := startPlainDaemon(t, h.cfgPath)
	code, out, errOut := runMoat(t, "", "bouncers", "add", "fw", "-c", h.cfgPath, "-o", "raw")
	key := strings.TrimSpace(out)
	if code != exitOK || len(key) < 16 {
		t.Fatalf("bouncers add: %d %q %s", code, out, errOut)
	}
	h.appendLines(t, "Failed password for root from 198.51.100.4 port 4000 ssh2")

	archive := filepath.Join(h.dir, "up.tar.gz")
	files, summary := supportDump(t, h.cfgPath, archive)
	if len(summary.NotCollected) != 0 {
		t.Errorf("not collected with the daemon up: %+v", summary.NotCollected)
	}
	for _, name := range []string{"README.txt", "versions.txt", "config.yaml", "status.json", "hub.json", "sources.json", "metrics.txt", "logs.txt", "goroutines.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("archive lacks %s (has %v)", name, keys(files))
		}
	}
	for name, want := range map[string]string{
		"goroutines.txt": "github.com/moatsec/moat/",
		"metrics.txt":    "moat_",
		"hub.json":       `"moat/ssh-bf"`,
		"sources.json":   h.logPath,
		"config.yaml":    "REDACTED",
		"versions.txt":   "daemon:    ",
		"status.json":    `"sources"`,
	} {
		if !strings.Contains(files[name], want) {
			t.Errorf("%s lacks %q:\n%.2000s", name, want, files[name])
		}
	}
	checkNoSecrets(t, files, append(slices.Clone(supportSecrets), key))
	if st, err := os.Stat(archive); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, %v: want 0600", st.Mode(), err)
	}
	if code, _, _ := runMoat(t, "", "support", "dump", "-c", h.cfgPath, "-f", archive); code == exitOK {
		t.Error("a second dump overwrote the archive")
	}

	must(t, d.stop(t, syscall.SIGTERM))
	files, summary = supportDump(t, h.cfgPath, filepath.Join(h.dir, "down.tar.gz"))
	var missing []string
	for _, m := range summary.NotCollected {
		missing = append(missing, m.File)
		if !strings.Contains(files["README.txt"], m.File) {
			t.Errorf("README.txt does not say %s is missing:\n%s", m.File, files["README.txt"])
		}
	}
	for _, name := range []string{"status.json", "goroutines.txt", "metrics.txt"} {
		if !slices.Contains(missing, name) {
			t.Errorf("daemon down: %s not reported missing (%v)", name, summary.NotCollected)
		}
	}
	for _, name := range []string{"config.yaml", "hub.json", "sources.json", "versions.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("daemon down: archive lacks %s", name)
		}
	}
	checkNoSecrets(t, files, append(slices.Clone(supportSecrets), key))
}

// supportDump runs moat support dump to path and returns the archive's
// files by base name, and the -o json summary.
func supportDump(t *testing.T, cfgPath, path string) (map[string]string, supportSummary) {
	t.Helper()
	code, out, errOut := runMoat(t, "", "support", "dump", "-c", cfgPath, "-f", path, "-o", "json")
	var sum supportSummary
	if code != exitOK || json.Unmarshal([]byte(out), &sum) != nil || sum.File != path {
		t.Fatalf("support dump: %d %s %s", code, out, errOut)
	}
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if dir := strings.TrimSuffix(filepath.Base(path), ".tar.gz"); !strings.HasPrefix(hdr.Name, dir+"/") {
			t.Errorf("entry %s outside %s/", hdr.Name, dir)
		}
		b, err := io.ReadAll(tr)
		must(t, err)
		files[filepath.Base(hdr.Name)] = string(b)
	}
	if len(files) != len(sum.Files) {
		t.Errorf("archive holds %v, summary says %v", keys(files), sum.Files)
	}
	return files, sum
}

func checkNoSecrets(t *testing.T, files map[string]string, secrets []string) {
	t.Helper()
	for name, text := range files {
		for _, s := range secrets {
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("%s holds the secret %q: ...%s...", name, s, text[max(0, i-60):min(len(text), i+len(s)+20)])
			}
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The log ring keeps warnings and errors whatever the level, oldest
// first, and only the latest.
func TestLogRing(t *testing.T) {
	var r logRing
	for i := range logRingLines + 10 {
		fmt.Fprintf(&r, "line %d\n", i)
	}
	got := r.Recent()
	if len(got) != logRingLines || got[0] != "line 10\n" || got[len(got)-1] != fmt.Sprintf("line %d\n", logRingLines+9) {
		t.Fatalf("ring kept %d lines, %q to %q", len(got), got[0], got[len(got)-1])
	}
	a := &app{stderr: io.Discard, logLevel: "error"}
	cfgLog, err := a.logger(config.Default())
	must(t, err)
	l := cfgLog.With("component", "test")
	l.Info("not kept")
	l.Warn("kept", "at", time.Unix(0, 0).UTC())
	ring := logRingOf(l).Recent()
	if len(ring) != 1 || !strings.Contains(ring[0], "msg=kept") || !strings.Contains(ring[0], "component=test") {
		t.Fatalf("ring %q", ring)
	}
}
