package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// acquisDir writes acquisition files into a fresh directory.
func acquisDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "acquis.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shippedLoaded is what the engine loads at the default hub.dir.
var shippedLoaded = map[string]bool{
	"moat/sshd": true, "moat/nginx": true, "moat/apache2": true, "moat/postfix": true, "moat/dovecot": true,
	"moat/exim4": true, "moat/mysql": true, "moat/proftpd": true, "moat/vsftpd": true,
}

// planOf detects the host and plans against the acquisition files.
func planOf(t *testing.T, h host, j Journal, acquis map[string]string, opts PlanOptions) Plan {
	t.Helper()
	inv, err := Detect(Catalog(), DetectOptions{Root: h.build(t), Journal: j, Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	ex, err := LoadExisting(acquisDir(t, acquis), nil)
	if err != nil {
		t.Fatalf("LoadExisting: %v", err)
	}
	opts.Existing = ex
	if opts.Loaded == nil {
		opts.Loaded = shippedLoaded
	}
	return BuildPlan(Catalog(), inv, opts)
}

// statusLine is a service's plan in one string: name status source read-by.
func statusLines(p Plan) []string {
	var out []string
	for _, s := range p.Services {
		l := s.Name + " " + s.Status
		if s.Source != "" {
			l += " " + s.Source
		}
		if s.ReadBy != "" {
			l += " by " + filepath.Base(s.ReadBy)
		}
		out = append(out, l)
	}
	return out
}

// entryLines is each planned entry in one string: name source inputs type.
func entryLines(p Plan) []string {
	var out []string
	for _, e := range p.Acquisition {
		out = append(out, e.Name+" "+e.Source+" "+strings.Join(append(e.Filenames, e.JournalFilter...), ",")+" "+e.Type)
	}
	return out
}

// pkgs is a dpkg status file with the packages installed.
func pkgs(names ...string) map[string]string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("Package: " + n + "\nStatus: install ok installed\n\n")
	}
	return map[string]string{"var/lib/dpkg/status": b.String()}
}

// withLogs adds log files to a host's files.
func withLogs(m map[string]string, files ...string) host {
	for _, f := range files {
		m[f] = "x\n"
	}
	return host{files: m}
}

const sshdJournal = "source: journalctl\njournalctl_filter:\n  - SYSLOG_IDENTIFIER=sshd\nlabels:\n  type: syslog\n"

// planCase is a host, its journal and acquisition, and the plan's
// services and entries in statusLines and entryLines form.
type planCase struct {
	name     string
	host     host
	journal  Journal
	acquis   map[string]string
	services []string
	entries  []string
	note     string
}

func planCases() []planCase {
	mail := func() map[string]string { return pkgs("postfix", "dovecot-core") }
	with := withLogs
	return []planCase{{
		name:     "a journal filter already reads sshd: never planned twice",
		host:     with(pkgs("openssh-server"), "var/log/auth.log"),
		journal:  journalOf("sshd"),
		acquis:   map[string]string{"sshd.yaml": sshdJournal},
		services: []string{"sshd configured journalctl by sshd.yaml:1"},
		entries:  nil,
	}, {
		name:     "a file glob already reads nginx",
		host:     with(pkgs("nginx"), "var/log/nginx/access.log"),
		acquis:   map[string]string{"web.yml": "source: file\nfilenames:\n  - /var/log/nginx/*.log\nlabels:\n  type: nginx\n"},
		services: []string{"nginx configured file by web.yml:1"},
	}, {
		name:     "an entry naming one file reads the service, and the other file is noted",
		host:     with(pkgs("nginx"), "var/log/nginx/a-access.log", "var/log/nginx/b-access.log"),
		acquis:   map[string]string{"a.yaml": "source: file\nfilename: /var/log/nginx/a-access.log\nlabels:\n  type: nginx\n"},
		services: []string{"nginx configured file by a.yaml:1"},
		note:     "nginx: /var/log/nginx/b-access.log is read by no acquisition entry",
	}, {
		name:     "a one-shot (cat) entry reads nothing live",
		host:     with(pkgs("nginx"), "var/log/nginx/access.log"),
		acquis:   map[string]string{"old.yaml": "source: file\nmode: cat\nfilenames:\n  - /var/log/nginx/*.log\nlabels:\n  type: nginx\n"},
		services: []string{"nginx add file"},
		entries:  []string{"setup-nginx file /var/log/nginx/*access*.log nginx"},
	}, {
		name:     "postfix and dovecot share mail.log: one reader",
		host:     with(mail(), "var/log/mail.log"),
		journal:  journalOf(),
		services: []string{"postfix add file", "dovecot add file"},
		entries:  []string{"setup-postfix-dovecot file /var/log/mail.log syslog"},
	}, {
		name:     "journal preferred when the identifier logged",
		host:     with(pkgs("openssh-server"), "var/log/auth.log"),
		journal:  journalOf("sshd"),
		services: []string{"sshd add journalctl"},
		entries:  []string{"setup-sshd journalctl SYSLOG_IDENTIFIER=sshd,SYSLOG_IDENTIFIER=sshd-session syslog"},
	}, {
		name:     "the file when the journal has nothing of the service and the file exists",
		host:     with(pkgs("openssh-server"), "var/log/auth.log"),
		journal:  journalOf(),
		services: []string{"sshd add file"},
		entries:  []string{"setup-sshd file /var/log/auth.log syslog"},
	}, {
		name:     "the journal for a service that has not logged yet and has no file",
		host:     with(pkgs("openssh-server")),
		journal:  journalOf(),
		services: []string{"sshd add journalctl"},
		entries:  []string{"setup-sshd journalctl SYSLOG_IDENTIFIER=sshd,SYSLOG_IDENTIFIER=sshd-session syslog"},
	}, {
		name:     "no journal: the file source waits for its file",
		host:     with(pkgs("openssh-server")),
		services: []string{"sshd add file"},
		entries:  []string{"setup-sshd file /var/log/auth.log syslog"},
	}, {
		name:     "no journal and no file for a journal-only service",
		host:     with(pkgs("proftpd-core")),
		services: []string{"proftpd no-log-found"},
		note:     "proftpd: no log to read",
	}, {
		name:     "dovecot logs to the journal, postfix does not yet: both from the journal, mail.log not read",
		host:     with(mail(), "var/log/mail.log"),
		journal:  journalOf("dovecot"),
		services: []string{"postfix add journalctl", "dovecot add journalctl"},
		entries: []string{
			"setup-postfix journalctl SYSLOG_IDENTIFIER=postfix/smtpd,SYSLOG_IDENTIFIER=postfix/submission/smtpd,SYSLOG_IDENTIFIER=postfix/smtps/smtpd syslog",
			"setup-dovecot journalctl SYSLOG_IDENTIFIER=dovecot syslog",
		},
	}, {
		name:     "postfix read from the journal already: dovecot too, not through mail.log",
		host:     with(mail(), "var/log/mail.log"),
		journal:  journalOf(),
		acquis:   map[string]string{"mail.yaml": "source: journalctl\njournalctl_filter:\n  - SYSLOG_IDENTIFIER=postfix/smtpd\nlabels:\n  type: syslog\n"},
		services: []string{"postfix configured journalctl by mail.yaml:1", "dovecot add journalctl"},
		entries:  []string{"setup-dovecot journalctl SYSLOG_IDENTIFIER=dovecot syslog"},
	}, {
		name:     "mail.log read already: dovecot's lines are in it",
		host:     with(mail(), "var/log/mail.log"),
		journal:  journalOf("dovecot"),
		acquis:   map[string]string{"mail.yaml": "source: file\nfilenames:\n  - /var/log/mail.log\nlabels:\n  type: syslog\n"},
		services: []string{"postfix configured file by mail.yaml:1", "dovecot configured file by mail.yaml:1"},
	}, {
		name:     "the catch-all syslog file holds every service but sshd",
		host:     with(pkgs("openssh-server", "haproxy"), "var/log/syslog", "var/log/auth.log"),
		journal:  journalOf("haproxy"),
		acquis:   map[string]string{"syslog.yaml": "source: file\nfilenames:\n  - /var/log/syslog\nlabels:\n  type: syslog\n"},
		services: []string{"sshd add file", "haproxy configured file by syslog.yaml:1"},
		entries:  []string{"setup-sshd file /var/log/auth.log syslog"},
	}, {
		name:     "a journal source without a filter reads every identifier; a kernel-only one does not",
		host:     with(pkgs("openssh-server", "nginx")),
		journal:  journalOf(),
		acquis:   map[string]string{"all.yaml": "source: journalctl\nlabels:\n  type: syslog\n", "kern.yaml": "source: journalctl\njournalctl_filter: [_TRANSPORT=kernel]\nlabels:\n  type: syslog\n"},
		services: []string{"sshd configured journalctl by all.yaml:1", "nginx add file"},
		entries:  []string{"setup-nginx file /var/log/nginx/*access*.log nginx"},
	}, {
		name:     "a _SYSTEMD_UNIT filter on the service's unit reads it",
		host:     with(pkgs("vsftpd")),
		journal:  journalOf("vsftpd"),
		acquis:   map[string]string{"ftp.yaml": "source: journalctl\njournalctl_filter: [_SYSTEMD_UNIT=vsftpd.service]\nlabels:\n  type: syslog\n"},
		services: []string{"vsftpd configured journalctl by ftp.yaml:1"},
	}, {
		name:     "a name an existing entry took is not reused",
		host:     with(pkgs("openssh-server")),
		journal:  journalOf("sshd"),
		acquis:   map[string]string{"x.yaml": "name: setup-sshd\nsource: file\nfilenames: [/var/log/other.log]\nlabels:\n  type: syslog\n"},
		services: []string{"sshd add journalctl"},
		entries:  []string{"setup-sshd-2 journalctl SYSLOG_IDENTIFIER=sshd,SYSLOG_IDENTIFIER=sshd-session syslog"},
	}, {
		name:     "setup's own earlier file is replaced, not counted as a reader",
		host:     with(pkgs("openssh-server")),
		journal:  journalOf("sshd"),
		acquis:   map[string]string{OwnFile: sshdJournal},
		services: []string{"sshd add journalctl"},
		entries:  []string{"setup-sshd journalctl SYSLOG_IDENTIFIER=sshd,SYSLOG_IDENTIFIER=sshd-session syslog"},
	}}
}

func TestSetupPlanAcquisition(t *testing.T) {
	for _, c := range planCases() {
		t.Run(c.name, func(t *testing.T) {
			p := planOf(t, c.host, c.journal, c.acquis, PlanOptions{})
			if d := cmp.Diff(c.services, statusLines(p)); d != "" {
				t.Errorf("services (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.entries, entryLines(p)); d != "" {
				t.Errorf("entries (-want +got):\n%s", d)
			}
			if c.note != "" && !strings.Contains(strings.Join(p.Notes, "\n"), c.note) {
				t.Errorf("notes %q lack %q", p.Notes, c.note)
			}
			// Whatever the case, the plan must render to a file that
			// loads beside the existing ones.
			if _, err := Write(acquisDir(t, c.acquis), p, Existing{}); err != nil {
				t.Errorf("Write: %v", err)
			}
		})
	}
}

func TestSetupPlanMergedEntryEvidence(t *testing.T) {
	h := host{files: map[string]string{
		"var/lib/dpkg/status": "Package: postfix\nStatus: install ok installed\n\nPackage: dovecot-core\nStatus: install ok installed\n",
		"var/log/mail.log":    "x\n",
	}}
	p := planOf(t, h, nil, nil, PlanOptions{})
	if len(p.Acquisition) != 1 {
		t.Fatalf("entries %q", entryLines(p))
	}
	e := p.Acquisition[0]
	want := []string{"package postfix", "log /var/log/mail.log", "package dovecot-core"}
	if d := cmp.Diff(want, e.Evidence); d != "" {
		t.Errorf("evidence of the shared reader (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"postfix", "dovecot"}, e.Services); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}
}

func TestSetupPlanHub(t *testing.T) {
	h := host{files: map[string]string{"var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\n\n" +
		"Package: haproxy\nStatus: install ok installed\n\nPackage: postfix\nStatus: install ok installed\n"}}
	source := map[string]bool{"crowdsecurity/haproxy": true, "crowdsecurity/sshd": true, "crowdsecurity/postfix": true}
	hubLines := func(p Plan) []string {
		var out []string
		for _, it := range p.Hub {
			l := it.Name + " " + it.Action + " " + strings.Join(it.Services, ",")
			if it.Note != "" {
				l += " (" + it.Note + ")"
			}
			out = append(out, l)
		}
		return out
	}
	cases := []struct {
		name     string
		opts     PlanOptions
		hub      []string
		installs []string
	}{{
		name:     "shipped, and haproxy from the hub source",
		opts:     PlanOptions{HubCollections: source},
		hub:      []string{"moat/sshd shipped sshd", "moat/postfix shipped postfix", "crowdsecurity/haproxy install haproxy"},
		installs: []string{"crowdsecurity/haproxy"},
	}, {
		name: "no hub source",
		opts: PlanOptions{},
		hub:  []string{"moat/sshd shipped sshd", "moat/postfix shipped postfix", "crowdsecurity/haproxy no-hub-source haproxy"},
	}, {
		name: "a source without it",
		opts: PlanOptions{HubCollections: map[string]bool{"crowdsecurity/nginx": true}},
		hub:  []string{"moat/sshd shipped sshd", "moat/postfix shipped postfix", "crowdsecurity/haproxy not-in-hub-source haproxy"},
	}, {
		name: "installed already",
		opts: PlanOptions{HubCollections: source, Loaded: map[string]bool{"moat/sshd": true, "moat/postfix": true, "crowdsecurity/haproxy": true}},
		hub:  []string{"moat/sshd shipped sshd", "moat/postfix shipped postfix", "crowdsecurity/haproxy installed haproxy"},
	}, {
		name: "hub.dir replaces the shipped content: the hub's collections instead",
		opts: PlanOptions{HubCollections: source, Loaded: map[string]bool{"acme/own": true}},
		hub: []string{"crowdsecurity/sshd install sshd", "crowdsecurity/postfix install postfix",
			"crowdsecurity/haproxy install haproxy"},
		installs: []string{"crowdsecurity/sshd", "crowdsecurity/postfix", "crowdsecurity/haproxy"},
	}, {
		name: "hub.items leaves collections out",
		opts: PlanOptions{HubCollections: source, HubItems: []string{"collections/moat/sshd"}},
		hub: []string{"moat/sshd shipped sshd", "moat/postfix shipped-not-in-items postfix (add moat/postfix to hub.items to run it)",
			"crowdsecurity/haproxy install haproxy (hub.items is set: add crowdsecurity/haproxy to it, or it is installed but not run)"},
		installs: []string{"crowdsecurity/haproxy"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := planOf(t, h, nil, nil, c.opts)
			if d := cmp.Diff(c.hub, hubLines(p)); d != "" {
				t.Errorf("hub (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.installs, p.Installs()); d != "" {
				t.Errorf("installs (-want +got):\n%s", d)
			}
			for _, s := range p.Services {
				if s.Collection == "" {
					t.Errorf("%s has no collection", s.Name)
				}
			}
		})
	}
}

// TestSetupShareLogsTransitive: a service sharing one file with each of
// two others joins all three in one group.
func TestSetupShareLogsTransitive(t *testing.T) {
	svc := func(name string, logs ...string) Service { return Service{Name: name, Logs: logs} }
	groups := shareLogs([]Service{svc("a", "/a"), svc("b", "/b"), svc("c", "/c"), svc("ab", "/a", "/b"), svc("d")})
	var got []string
	for _, g := range groups {
		var names []string
		for _, s := range g {
			names = append(names, s.Name)
		}
		got = append(got, strings.Join(names, "+"))
	}
	if d := cmp.Diff([]string{"a+b+ab", "c", "d"}, got); d != "" {
		t.Errorf("groups (-want +got):\n%s", d)
	}
}

// TestSetupAddEntryMergesEveryOverlap: an entry sharing a file with each
// of two entries merges the three, so no file has two readers.
func TestSetupAddEntryMergesEveryOverlap(t *testing.T) {
	taken := map[string]bool{}
	file := func(svc string, files ...string) Entry {
		return Entry{Services: []string{svc}, Source: "file", Filenames: files, Type: "syslog"}
	}
	var es []Entry
	es = addEntry(es, Entry{Services: []string{"j"}, Source: "journalctl", Type: "syslog"}, nil, taken)
	es = addEntry(es, file("a", "/a"), []string{"a"}, taken)
	es = addEntry(es, file("b", "/b"), []string{"b"}, taken)
	es = addEntry(es, file("ab", "/a", "/b"), []string{"ab"}, taken)
	var got []string
	for _, e := range es {
		got = append(got, e.Name+" "+strings.Join(e.Filenames, ",")+" "+strings.Join(e.Evidence, ","))
	}
	if d := cmp.Diff([]string{"setup-j  ", "setup-a-b-ab /a,/b a,b,ab"}, got); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	if len(taken) != 2 || !taken["setup-a-b-ab"] {
		t.Errorf("names taken: %v", taken)
	}
}
