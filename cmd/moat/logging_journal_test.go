package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/sdjournal"

	"github.com/moatsec/moat/internal/testutil"
)

// The journald test runs against a private journald: the test binary
// re-runs itself under `unshare -m -n` (a Go process cannot unshare its
// own mount namespace), mounts tmpfs over the journal directories, starts
// systemd-journald there and runs moat with its stderr on a journald
// stream, as systemd does for a service.
const journaldChildEnv = "MOAT_LOG_JOURNALD_CHILD"

func TestJournaldPriorities(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/lib/systemd/systemd-journald"); err != nil {
		t.Skipf("SKIPPED: no systemd-journald to run privately: %v", err)
	}
	cmd := exec.Command("unshare", "-m", "-n", "--propagation", "private",
		os.Args[0], "-test.run=^TestJournaldPrioritiesChild$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), journaldChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestJournaldPrioritiesChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestJournaldPrioritiesChild(t *testing.T) {
	if os.Getenv(journaldChildEnv) == "" {
		t.Skip("runs only inside the private namespaces TestJournaldPriorities creates")
	}
	startPrivateJournald(t)

	// A journald stream as systemd sets one up for a service: header,
	// then lines; level_prefix 1 makes journald read "<N>" prefixes.
	ident := testutil.RandName("moat-log-", 8)
	conn, err := net.Dial("unix", "/run/systemd/journal/stdout")
	must(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "%s\n\n6\n1\n0\n0\n0\n", ident)
	must(t, err)
	stream, err := conn.(*net.UnixConn).File()
	must(t, err)
	defer stream.Close()
	fi, err := stream.Stat()
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)

	// A daemon with nothing to read and no kernel backend: it warns twice
	// and logs that it runs.
	dir := t.TempDir()
	root := repoRoot(t)
	must(t, os.MkdirAll(filepath.Join(dir, "acquis.d"), 0o755))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`state_dir: %[1]s/state
api: {socket: %[1]s/moat.sock, listen: ""}
metrics: {listen: ""}
hub: {dir: %[2]s/packaging/hub, patterns: %[2]s/packaging/patterns, data: %[1]s/data}
acquisition: {dir: %[1]s/acquis.d}
profiles: %[2]s/packaging/profiles.yaml
enforce: {nftables: {enabled: false}}
`, dir, root)), 0o644))
	daemon := exec.Command(os.Args[0], "run", "--config", cfg)
	daemon.Env = append(os.Environ(), "MOAT_TEST_MAIN=1", fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	daemon.Stderr = stream
	must(t, daemon.Start())
	defer daemon.Process.Kill()

	want := map[string]string{
		"no kernel backend enabled": "4",
		"no acquisition configured": "4",
		"moat running":              "6",
	}
	got := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("journal entries of %s: got %v, want %v", ident, got, want)
		}
		time.Sleep(100 * time.Millisecond)
		got = readPriorities(t, ident, want)
	}
	must(t, daemon.Process.Signal(syscall.SIGTERM))
	must(t, daemon.Wait())
	for msg, prio := range want {
		if got[msg] != prio {
			t.Errorf("%q filed at priority %s, want %s", msg, got[msg], prio)
		}
	}
}

// readPriorities returns, for each message of ident that contains one of
// want's keys, its PRIORITY; a MESSAGE still carrying "<N>" fails.
func readPriorities(t *testing.T, ident string, want map[string]string) map[string]string {
	t.Helper()
	j, err := sdjournal.NewJournal()
	must(t, err)
	defer j.Close()
	must(t, j.AddMatch("SYSLOG_IDENTIFIER="+ident))
	must(t, j.SeekHead())
	got := map[string]string{}
	for {
		n, err := j.Next()
		must(t, err)
		if n == 0 {
			return got
		}
		msg, _ := j.GetDataValue("MESSAGE")
		prio, _ := j.GetDataValue("PRIORITY")
		if strings.HasPrefix(msg, "<") {
			t.Fatalf("journald kept the priority prefix in %q", msg)
		}
		for k := range want {
			if strings.Contains(msg, k) {
				got[k] = prio
			}
		}
	}
}

// startPrivateJournald mounts tmpfs over the journal directories of this
// (private) mount namespace and starts systemd-journald on them.
func startPrivateJournald(t *testing.T) {
	t.Helper()
	for _, d := range []string{"/run/systemd/journal", "/run/log", "/var/log/journal"} {
		must(t, os.MkdirAll(d, 0o755))
		testutil.Run(t, "mount", "-t", "tmpfs", "tmpfs", d)
	}
	conf := filepath.Join(t.TempDir(), "journald.conf")
	must(t, os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"+
		"ReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nForwardToKMsg=no\n"), 0o644))
	if _, err := os.Stat("/etc/systemd/journald.conf"); err != nil {
		t.Fatalf("no journald.conf to bind over: %v", err)
	}
	testutil.Run(t, "mount", "--bind", conf, "/etc/systemd/journald.conf")
	if _, err := os.Stat("/etc/systemd/journald.conf.d"); err == nil {
		testutil.Run(t, "mount", "-t", "tmpfs", "tmpfs", "/etc/systemd/journald.conf.d")
	}
	jd := exec.Command("/lib/systemd/systemd-journald")
	must(t, jd.Start())
	t.Cleanup(func() {
		jd.Process.Kill()
		jd.Wait()
	})
	waitFor(t, 10*time.Second, "the journald sockets", func() bool {
		_, err1 := os.Stat("/run/systemd/journal/socket")
		_, err2 := os.Stat("/run/systemd/journal/stdout")
		return err1 == nil && err2 == nil
	})
}
