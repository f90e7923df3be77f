package setup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// host is a fake host tree: files by path (relative to the root) and
// symlinks by path to their target.
type host struct {
	files    map[string]string
	symlinks map[string]string
}

// dpkgStatus is a status file with an installed package, one removed but
// not purged (its conffiles keep the stanza) and one half installed.
const dpkgStatus = `Package: openssh-server
Status: install ok installed
Priority: optional
Version: 1:9.2p1-2+deb12u3
Description: secure shell (SSH) server
 Package: postfix
 a continuation line that must not count as a stanza of its own

Package: nginx
Status: deinstall ok config-files
Version: 1.22.1-9

Package: vsftpd
Status: install reinstreq half-installed
Version: 3.0.3-13

Package: postfix
Status: install ok installed
Version: 3.7.11-0+deb12u1

Package: dovecot-core
Architecture: amd64
Status: hold ok installed
`

// build writes the host under a fresh root and returns it.
func (h host) build(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root [1]") // glob characters in the root
	for p, body := range h.files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range h.symlinks {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// fakeJournal answers Seen from a set of identifiers.
type fakeJournal struct {
	logged map[string]bool
	err    error
	asked  []string
}

func (j *fakeJournal) Seen(ids []string, _ time.Time) (map[string]bool, error) {
	j.asked = ids
	if j.err != nil {
		return nil, j.err
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = j.logged[id]
	}
	return out, nil
}

func (j *fakeJournal) Close() error { return nil }

func journalOf(ids ...string) *fakeJournal {
	j := &fakeJournal{logged: map[string]bool{}}
	for _, id := range ids {
		j.logged[id] = true
	}
	return j
}

// evidenceOf runs Detect and returns the evidence of every service found.
func evidenceOf(t *testing.T, h host, j Journal) (map[string][]string, Inventory) {
	t.Helper()
	inv, err := Detect(Catalog(), DetectOptions{Root: h.build(t), Journal: j, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	got := map[string][]string{}
	for _, s := range Catalog() {
		if ev := inv.Evidence(s); len(ev) > 0 {
			got[s.Name] = ev
		}
	}
	return got, inv
}

func TestSetupDetectEvidence(t *testing.T) {
	status := map[string]string{"var/lib/dpkg/status": dpkgStatus}
	with := func(m map[string]string, more ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(more); i += 2 {
			out[more[i]] = more[i+1]
		}
		return out
	}
	cases := []struct {
		name    string
		host    host
		journal Journal
		want    map[string][]string
		note    string // a note Detect must add
		notNote string // and one it must not
	}{{
		name: "installed packages; a removed or half-installed one is no evidence",
		host: host{files: with(status,
			"var/log/nginx/access.log", "a log the removed nginx left\n",
			"var/log/vsftpd.log", "")},
		want: map[string][]string{
			"sshd":    {"package openssh-server"},
			"postfix": {"package postfix"},
			"dovecot": {"package dovecot-core"},
		},
	}, {
		name: "logs count beside other evidence",
		host: host{files: with(status, "var/log/mail.log", "x\n", "var/log/auth.log", "x\n")},
		want: map[string][]string{
			"sshd":    {"package openssh-server", "log /var/log/auth.log"},
			"postfix": {"package postfix", "log /var/log/mail.log"},
			"dovecot": {"package dovecot-core", "log /var/log/mail.log"},
		},
	}, {
		name: "a log file alone is no evidence",
		host: host{files: map[string]string{"var/log/mail.log": "x\n", "var/log/nginx/site-access.log": "x\n"}},
		want: map[string][]string{},
		note: "no dpkg status",
	}, {
		name: "units, with a mask and an alias a removed package left",
		host: host{
			files: map[string]string{
				"lib/systemd/system/apache2.service":         "[Unit]\n",
				"lib/systemd/system/mariadb.service":         "[Unit]\n",
				"usr/lib/systemd/system/haproxy.service":     "[Unit]\n",
				"var/log/apache2/other_vhosts_access.log":    "x\n",
				"etc/systemd/system/multi-user.target.wants": "",
			},
			symlinks: map[string]string{
				"etc/systemd/system/mariadb.service": "/dev/null",
				"etc/systemd/system/hwclock.service": "/dev/null",
				"etc/systemd/system/sshd.service":    "/lib/systemd/system/ssh.service",
				"etc/systemd/system/exim4.service":   "../../../lib/systemd/system/apache2.service",
			},
		},
		want: map[string][]string{
			"apache2": {"unit apache2.service", "log /var/log/apache2/other_vhosts_access.log"},
			"exim4":   {"unit exim4.service"},
			"haproxy": {"unit haproxy.service"},
		},
		note:    "unit mariadb.service is masked",
		notNote: "hwclock",
	}, {
		name:    "journal identifiers",
		host:    host{files: status},
		journal: journalOf("proftpd", "sshd-session", "nobody-in-the-catalog"),
		want: map[string][]string{
			"sshd":    {"package openssh-server", "journal sshd-session"},
			"postfix": {"package postfix"},
			"dovecot": {"package dovecot-core"},
			"proftpd": {"journal proftpd"},
		},
	}, {
		name:    "a journal that fails is a note, not an error",
		host:    host{files: status},
		journal: &fakeJournal{err: errors.New("permission denied")},
		want: map[string][]string{
			"sshd":    {"package openssh-server"},
			"postfix": {"package postfix"},
			"dovecot": {"package dovecot-core"},
		},
		note: "journal not read",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, inv := evidenceOf(t, c.host, c.journal)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("evidence (-want +got):\n%s", d)
			}
			if c.note != "" && !slices.ContainsFunc(inv.Notes, func(n string) bool { return strings.Contains(n, c.note) }) {
				t.Errorf("notes %q lack %q", inv.Notes, c.note)
			}
			if c.notNote != "" && slices.ContainsFunc(inv.Notes, func(n string) bool { return strings.Contains(n, c.notNote) }) {
				t.Errorf("notes %q mention %q", inv.Notes, c.notNote)
			}
			if fj, ok := c.journal.(*fakeJournal); ok && fj.err == nil && inv.JournalOK != true {
				t.Errorf("JournalOK false with a journal that answered")
			}
		})
	}
}

func TestSetupDetectAsksEveryIdentifier(t *testing.T) {
	j := journalOf()
	if _, err := Detect(Catalog(), DetectOptions{Root: host{}.build(t), Journal: j}); err != nil {
		t.Fatal(err)
	}
	for _, s := range Catalog() {
		for _, id := range s.Journal {
			if !slices.Contains(j.asked, id) {
				t.Errorf("journal not asked for %s (%s)", id, s.Name)
			}
		}
	}
}

func TestSetupDetectBadStatus(t *testing.T) {
	root := host{}.build(t)
	// A directory where the status file should be: not "no dpkg", an error.
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg/status"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect(Catalog(), DetectOptions{Root: root}); err == nil || !strings.Contains(err.Error(), "dpkg status") {
		t.Errorf("Detect on an unreadable status file: %v", err)
	}
}
