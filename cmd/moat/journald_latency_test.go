package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/testutil"
)

// TestDetectionToKernelLatencyJournald is the journald twin of
// TestDetectionToKernelLatency: 200 attackers written to a private journald
// that the daemon follows. The Go test process is multi-threaded and cannot
// leave its mount namespace, so it re-runs itself under unshare -m.
func TestDetectionToKernelLatencyJournald(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: private journald and a live daemon")
	}
	if os.Getenv("MOAT_JOURNALD_CHILD") == "1" {
		journaldChild(t)
		return
	}
	victim := testutil.NewNetNS(t)
	dir := t.TempDir()
	root := repoRoot(t)
	must(t, os.MkdirAll(filepath.Join(dir, "acquis.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "acquis.d", "sshd.yaml"), []byte("source: journalctl\njournalctl_filter: [SYSLOG_IDENTIFIER=sshd]\nlabels: {type: syslog}\n"), 0o644))
	cfg := fmt.Sprintf("state_dir: %[1]s/state\napi:\n  socket: %[1]s/moat.sock\n  listen: \"\"\nmetrics:\n  listen: 127.0.0.1:9641\nhub:\n  dir: %[2]s/packaging/hub\n  patterns: %[2]s/packaging/patterns\nacquisition:\n  dir: %[1]s/acquis.d\nprofiles: %[2]s/packaging/profiles.yaml\n", dir, root)
	must(t, os.WriteFile(filepath.Join(dir, "moat.yaml"), []byte(cfg), 0o644))

	cmd := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0], "-test.run=^TestDetectionToKernelLatencyJournald$", "-test.v")
	cmd.Env = append(os.Environ(), "MOAT_JOURNALD_CHILD=1", "MOAT_NETNS="+victim.Path(), "MOAT_DIR="+dir)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "detection to kernel") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func journaldChild(t *testing.T) {
	netns, dir := os.Getenv("MOAT_NETNS"), os.Getenv("MOAT_DIR")
	for _, d := range []string{"/run/systemd/journal", "/run/log"} {
		must(t, os.MkdirAll(d, 0o755))
		testutil.Run(t, "mount", "-t", "tmpfs", "tmpfs", d)
	}
	conf := filepath.Join(dir, "journald.conf")
	must(t, os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\n"), 0o644))
	testutil.Run(t, "mount", "--bind", conf, "/etc/systemd/journald.conf")
	jd := exec.Command("/lib/systemd/systemd-journald")
	must(t, jd.Start())
	defer func() { jd.Process.Kill(); jd.Wait() }()
	waitFor(t, 10*time.Second, "the journald socket", func() bool {
		_, err := os.Stat("/run/systemd/journal/socket")
		return err == nil
	})

	d := exec.Command("nsenter", "--net="+netns, os.Args[0], "run", "--config", filepath.Join(dir, "moat.yaml"))
	d.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	logs := &syncBuffer{}
	d.Stdout, d.Stderr = logs, logs
	must(t, d.Start())
	defer func() { d.Process.Kill(); d.Wait() }()
	waitFor(t, 30*time.Second, "the daemon to start", func() bool { return strings.Contains(logs.String(), "moat running") })

	const attackers = 200
	for i := 0; i < attackers; i++ {
		ip := fmt.Sprintf("198.19.%d.%d", 1+i/250, 1+i%250)
		for j := 0; j < 6; j++ {
			must(t, journal.Send("Failed password for root from "+ip+" port 4000 ssh2", journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "sshd"}))
		}
		time.Sleep(5 * time.Millisecond)
	}
	var sum metrics.Summary
	waitFor(t, 60*time.Second, "200 bans in the histogram", func() bool {
		out, err := exec.Command("nsenter", "--net="+netns, "curl", "-sf", "http://127.0.0.1:9641/metrics").Output()
		if err != nil {
			return false
		}
		fams, err := parseMetricsText(strings.NewReader(string(out)))
		must(t, err)
		sum = metrics.Summarize(fams)
		return sum.Latency.Count >= attackers
	})
	if sum.Latency.Count != attackers {
		t.Fatalf("histogram counted %v bans, want %d\n%s", sum.Latency.Count, attackers, logs.String())
	}
	t.Logf("detection to kernel over %d attackers (journald): p50 %.3f ms, p90 %.3f ms, p99 %.3f ms (histogram estimate)",
		attackers, sum.Latency.P50*1e3, sum.Latency.P90*1e3, sum.Latency.P99*1e3)
	if sum.Latency.P99 > 0.5 {
		t.Fatalf("p99 %.1f ms: the path is broken, not just slow", sum.Latency.P99*1e3)
	}
}
