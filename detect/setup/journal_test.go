package setup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/moatsec/moat/internal/testutil"
)

// catalogIDs are every identifier of the catalog.
func catalogIDs() []string {
	var ids []string
	for _, s := range Catalog() {
		ids = append(ids, s.Journal...)
	}
	return ids
}

// waitSeen asks j for id until it is seen or the deadline passes: journald
// writes an entry a moment after it receives it.
func waitSeen(t *testing.T, j Journal, id string, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen, err := j.Seen([]string{id}, since)
		if err != nil {
			t.Fatalf("Seen: %v", err)
		}
		if seen[id] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged but not seen", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSetupJournalReal asks this machine's journal for the catalog's
// identifiers, as moat setup does; where journald listens it also logs an
// entry and finds it.
func TestSetupJournalReal(t *testing.T) {
	j, err := OpenJournal("/")
	if err != nil {
		t.Skipf("SKIPPED: the journal of this machine cannot be opened (libsystemd missing, or no read access to it), so moat setup would plan without it: %v", err)
	}
	if j == nil {
		t.Skip("SKIPPED: this machine's journal holds no entry (no journald runs here), so moat setup plans without it; TestSetupJournalPrivate reads a real journal")
	}
	defer j.Close()
	never := testutil.RandName("moat-setup-never-", 12)
	ids := append(catalogIDs(), never)
	seen, err := j.Seen(ids, time.Now().Add(-30*24*time.Hour))
	if err != nil {
		t.Fatalf("Seen: %v", err)
	}
	var logged []string
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			t.Errorf("no answer for %s", id)
		}
		if seen[id] {
			logged = append(logged, id)
		}
	}
	if seen[never] {
		t.Errorf("%s seen, and nothing ever logged it", never)
	}
	t.Logf("catalog identifiers this machine's journal holds from the last 30 days: %q", logged)
	if !journal.Enabled() {
		t.Logf("NOTE: no journald listens on this machine: only the negative half ran here (TestSetupJournalPrivate logs and finds an entry)")
		return
	}
	id := testutil.RandName("moat-setup-test-", 12)
	since := time.Now().Add(-time.Minute)
	if err := journal.Send("moat setup test entry", journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": id}); err != nil {
		t.Fatalf("journal.Send: %v", err)
	}
	waitSeen(t, j, id, since)
}

func TestSetupJournalMissing(t *testing.T) {
	root := t.TempDir()
	j, err := OpenJournal(root)
	if err != nil || j != nil {
		t.Errorf("a root without a journal: %v %v", j, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/log/journal/0123456789abcdef0123456789abcdef"), 0o755); err != nil {
		t.Fatal(err)
	}
	if j, err = OpenJournal(root); err != nil || j != nil {
		t.Errorf("a root with an empty journal directory: %v %v", j, err)
	}
}

// privateJournaldEnv marks the child TestSetupJournalPrivate runs.
const privateJournaldEnv = "MOAT_SETUP_JOURNALD_CHILD"

// TestSetupJournalPrivate runs a private journald in a mount namespace of
// its own (a Go process cannot unshare its own: the test binary runs
// itself under unshare), logs entries and finds them by identifier and
// time, through the system journal and through a host root's journal
// directory.
func TestSetupJournalPrivate(t *testing.T) {
	if os.Getenv(privateJournaldEnv) != "" {
		journalChild(t)
		return
	}
	testutil.RequireRoot(t)
	for _, bin := range []string{"unshare", "/lib/systemd/systemd-journald"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("SKIPPED: %s is needed for a private journald: %v", bin, err)
		}
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0], "-test.run=^TestSetupJournalPrivate$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), privateJournaldEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSetupJournalPrivate") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func journalChild(t *testing.T) {
	for _, d := range []string{"/run/systemd/journal", "/run/log", "/var/log/journal"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		mount(t, "-t", "tmpfs", "tmpfs", d)
	}
	conf := filepath.Join(t.TempDir(), "journald.conf")
	if err := os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nRateLimitBurst=0\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mount(t, "--bind", conf, "/etc/systemd/journald.conf")
	if _, err := os.Stat("/etc/systemd/journald.conf.d"); err == nil {
		mount(t, "-t", "tmpfs", "tmpfs", "/etc/systemd/journald.conf.d")
	}
	jd := exec.Command("/lib/systemd/systemd-journald")
	if err := jd.Start(); err != nil {
		t.Fatalf("start journald: %v", err)
	}
	t.Cleanup(func() { jd.Process.Kill(); jd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !journal.Enabled(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("journald socket did not appear")
		}
	}
	id := testutil.RandName("moat-setup-", 12)
	if err := journal.Send("an entry", journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": id}); err != nil {
		t.Fatal(err)
	}
	// Until journald has written its first entry, the journal is one
	// OpenJournal calls empty.
	var sys Journal
	for deadline := time.Now().Add(10 * time.Second); sys == nil; time.Sleep(10 * time.Millisecond) {
		var err error
		if sys, err = OpenJournal("/"); err != nil {
			t.Fatal(err)
		}
		if sys == nil && time.Now().After(deadline) {
			t.Fatal("the private journal stayed empty")
		}
	}
	defer sys.Close()
	waitSeen(t, sys, id, time.Time{})
	waitSeen(t, sys, id, time.Now().Add(-time.Minute))
	if seen, err := sys.Seen([]string{id, "sshd"}, time.Now().Add(time.Minute)); err != nil || seen[id] || seen["sshd"] {
		t.Errorf("entries before since counted: %v %v", seen, err)
	}

	// A host root whose journal is a directory of files.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "run/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/run/log/journal", filepath.Join(root, "run/log/journal")); err != nil {
		t.Fatal(err)
	}
	dir, err := OpenJournal(root)
	if err != nil || dir == nil {
		t.Fatalf("OpenJournal(%s): %v %v", root, dir, err)
	}
	defer dir.Close()
	waitSeen(t, dir, id, time.Time{})
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
