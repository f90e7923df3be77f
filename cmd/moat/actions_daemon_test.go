package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// TestDaemonActions runs moat (no kernel backend, so no root) with an
// action that records each event it runs for: a brute force, a forever
// ban from the CLI and its delete reach it, and after a restart the
// restored ban does, marked restored.
func TestDaemonActions(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP in -short mode: runs the daemon twice")
	}
	h := &notifyHost{e2eHost: e2eHost{dir: t.TempDir()}}
	h.cfgPath = filepath.Join(h.dir, "moat.yaml")
	h.logPath = filepath.Join(h.dir, "auth.log")
	events := filepath.Join(h.dir, "events")
	acquis := filepath.Join(h.dir, "acquis.d")
	must(t, os.MkdirAll(events, 0o755))
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(h.logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte(fmt.Sprintf(
		"source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", h.logPath)), 0o644))
	record := filepath.Join(h.dir, "record.sh")
	must(t, os.WriteFile(record, []byte(`#!/bin/sh
out="$1/$MOAT_EVENT-$MOAT_VALUE-$MOAT_RESTORED"
{ printf '%s\n' "$@"; env | grep '^MOAT_' | sort; } > "$out.tmp"
mv "$out.tmp" "$out"
`), 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	h.metrics = ln.Addr().String()
	ln.Close()
	root := repoRoot(t)
	cfg := daemonConfig(h.dir, root, acquis) + "  nftables: {enabled: false}\n"
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9641", "listen: "+h.metrics, 1)
	cfg += fmt.Sprintf(`actions:
  record:
    command: %s
    args: ["%s", "{{.Value}}", "{{.Scenario}}", "{{.Duration}}"]
    on: [ban, unban]
    restored: true
    timeout: 20s
`, record, events)
	must(t, os.WriteFile(h.cfgPath, []byte(cfg), 0o644))

	read := func(name string) string {
		t.Helper()
		var data []byte
		waitFor(t, 30*time.Second, "action event "+name, func() bool {
			var err error
			data, err = os.ReadFile(filepath.Join(events, name))
			return err == nil
		})
		return string(data)
	}

	d := startPlainDaemon(t, h.cfgPath)
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf("Failed password for root from 198.51.100.9 port %d ssh2", 40000+i))
	}
	h.appendLines(t, lines...)
	if got := read("ban-198.51.100.9-false"); !strings.Contains(got, "198.51.100.9\n") || !strings.Contains(got, "ssh") || !strings.Contains(got, "MOAT_ORIGIN=local\n") {
		t.Errorf("attacker's ban action:\n%s", got)
	}

	if code, out, errOut := runMoat(t, "", "decisions", "add", "--ip", "192.0.2.77", "--duration", "forever", "-c", h.cfgPath); code != exitOK {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	if got := read("ban-192.0.2.77-false"); !strings.Contains(got, "MOAT_DURATION=forever\n") || !strings.Contains(got, "MOAT_ORIGIN=cli\n") {
		t.Errorf("forever ban action:\n%s", got)
	}
	if code, out, errOut := runMoat(t, "", "decisions", "delete", "--ip", "192.0.2.77", "-c", h.cfgPath); code != exitOK {
		t.Fatalf("delete: %d %s %s", code, out, errOut)
	}
	if got := read("unban-192.0.2.77-false"); !strings.Contains(got, "MOAT_EVENT=unban\n") {
		t.Errorf("unban action:\n%s", got)
	}
	waitFor(t, 30*time.Second, "the runs in the metrics", func() bool {
		return strings.Contains(httpGet(t, "http://"+h.metrics+"/metrics"), `moat_action_runs_total{action="record",result="ok"} 3`)
	})

	code, out, errOut := runMoat(t, "", "actions", "list", "-c", h.cfgPath, "-o", "json")
	var as []api.ActionStats
	if code != exitOK || json.Unmarshal([]byte(out), &as) != nil || len(as) != 1 || as[0].Name != "record" || as[0].Runs["ok"] != 3 || as[0].Exits[0] != 3 || as[0].QueueCap != 1000 {
		t.Fatalf("actions list: %d %s %s", code, out, errOut)
	}
	if code, out, _ := runMoat(t, "", "actions", "list", "-c", h.cfgPath, "-o", "table"); code != exitOK || !strings.Contains(out, "record") || !strings.Contains(out, record) {
		t.Errorf("actions list table: %d %s", code, out)
	}

	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	startPlainDaemon(t, h.cfgPath)
	if got := read("ban-198.51.100.9-true"); !strings.Contains(got, "MOAT_RESTORED=true\n") {
		t.Errorf("restored ban action:\n%s", got)
	}
	// The deleted forever ban is not restored.
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(events, "ban-192.0.2.77-true")); err == nil {
		t.Error("a deleted ban was restored")
	}
}

// TestConfigCheckActions: moat config check finds an action that cannot
// run, at its line, with the usage exit code.
func TestConfigCheckActions(t *testing.T) {
	dir := t.TempDir()
	acquis := filepath.Join(dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	base := daemonConfig(dir, repoRoot(t), acquis)
	path := filepath.Join(dir, "moat.yaml")
	for _, tc := range []struct{ action, want string }{
		{"    command: " + filepath.Join(dir, "missing.sh") + "\n", "action report: command: stat "},
		{"    command: /bin/true\n    args: [\"{{.Nope}}\"]\n", "action report: args[0]: template"},
	} {
		cfg := base + "actions:\n  report:\n" + tc.action
		must(t, os.WriteFile(path, []byte(cfg), 0o644))
		code, _, errOut := runMoat(t, "", "config", "check", "--config", path)
		if code != exitUsage || !strings.Contains(errOut, path+":") || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.action, code, errOut, exitUsage, tc.want)
		}
	}
	must(t, os.WriteFile(path, []byte(base+"actions:\n  report:\n    command: /bin/true\n    args: [\"{{.Value}}\"]\n"), 0o644))
	if code, _, errOut := runMoat(t, "", "config", "check", "--config", path); code != exitOK {
		t.Errorf("good action: exit %d, %s", code, errOut)
	}
}
