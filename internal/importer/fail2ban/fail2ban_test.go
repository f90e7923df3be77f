package fail2ban

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/internal/importer"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "600", want: 10 * time.Minute},
		{in: "10m", want: 10 * time.Minute},
		{in: "1h 30m", want: 90 * time.Minute},
		{in: "1d", want: 24 * time.Hour},
		{in: "1w", want: 7 * 24 * time.Hour},
		{in: "2 hours", want: 2 * time.Hour},
		{in: "3mo", want: time.Duration(3 * 365.2425 * 24 / 12 * float64(time.Hour))},
		{in: "-1", want: -1},
		{in: "10 parsecs", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseTime(%q): error %v, want error %v", tt.in, err, tt.bad)
			continue
		}
		if !tt.bad && got != tt.want {
			t.Errorf("ParseTime(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestInterpolation(t *testing.T) {
	c, err := parseINI("test.conf", []byte(`[DEFAULT]
a = one
b = %(a)s two
self = base
port = 22

[jail]
a = jail-one
self = %(self)s more
known = %(known/port)s
cross = %(other/x)s
pct = 100%%
name = %(__name__)s
loop = %(loop)s

[other]
x = from-other
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ key, want string }{
		{"b", "jail-one two"}, // DEFAULT's value sees the jail's a
		{"self", "base more"},
		{"known", "22"},
		{"cross", "from-other"},
		{"pct", "100%"},
		{"name", "jail"},
	}
	for _, tt := range tests {
		got, ok, err := c.Get("jail", tt.key)
		if err != nil || !ok || got != tt.want {
			t.Errorf("Get(jail, %s) = %q, %v, %v; want %q", tt.key, got, ok, err, tt.want)
		}
	}
	if _, _, err := c.Get("jail", "missing"); err != nil {
		t.Errorf("unset key: %v", err)
	}
	// loop names itself, which in a section reaches DEFAULT, which has no loop.
	if _, _, err := c.Get("jail", "loop"); err == nil || !strings.Contains(err.Error(), "test.conf:14") {
		t.Errorf("self reference without a DEFAULT value: error %v, want one naming test.conf:14", err)
	}
}

func TestLoad(t *testing.T) {
	c, err := Load("testdata/etc")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Jail{}
	for _, j := range c.Enabled() {
		j.File = filepath.Base(j.File)
		got[j.Name] = j
	}
	inc := Increment{Enabled: true, Factor: 1, MaxTime: 7 * 24 * time.Hour}
	ignore := []string{"127.0.0.1/8", "::1", "203.0.113.7", "198.51.100.0/24"}
	want := map[string]Jail{
		"sshd": {Name: "sshd", Enabled: true, Filter: "sshd", Backend: "auto",
			LogPaths: []string{"/var/log/auth.log", "/var/log/sshd-extra.log"}, IgnoreIP: ignore,
			BanTime: time.Hour, FindTime: 10 * time.Minute, MaxRetry: 3, Increment: inc, File: "defaults-debian.conf", Line: 2},
		"postfix": {Name: "postfix", Enabled: true, Filter: "postfix", Backend: "auto",
			LogPaths: []string{"/var/log/mail.log"}, IgnoreIP: ignore,
			BanTime: 2 * time.Hour, FindTime: 10 * time.Minute, MaxRetry: 3, Increment: Increment{Factor: 1, MaxTime: inc.MaxTime}, File: "mail.conf", Line: 2},
		"dovecot": {Name: "dovecot", Enabled: true, Filter: "dovecot", Backend: "systemd",
			LogPaths: []string{"/var/log/mail.log"}, IgnoreIP: ignore,
			BanTime: 10 * time.Minute, FindTime: 10 * time.Minute, MaxRetry: 5, Increment: inc, File: "mail.conf", Line: 6},
		"recidive": {Name: "recidive", Enabled: true, Filter: "recidive", Backend: "auto",
			LogPaths: []string{"/var/log/fail2ban.log"}, IgnoreIP: ignore,
			BanTime: 7 * 24 * time.Hour, FindTime: 24 * time.Hour, MaxRetry: 5, Increment: inc, File: "jail.local", Line: 14},
		"asterisk": {Name: "asterisk", Enabled: true, Filter: "asterisk", Backend: "auto",
			LogPaths: []string{"/var/log/asterisk/messages"}, IgnoreIP: ignore,
			BanTime: 10 * time.Minute, FindTime: 10 * time.Minute, MaxRetry: 10, Increment: inc, File: "jail.local", Line: 17},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("enabled jails (-want +got):\n%s", d)
	}
}

func TestTranslate(t *testing.T) {
	c, err := Load("testdata/etc")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Translate(context.Background(), c, Options{OutDir: "/out"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := r.YAML("test")
	if err != nil {
		t.Fatal(err)
	}
	text := string(y)
	for _, want := range []string{
		"    - name: moat/ssh-bf\n      capacity: 2\n      leakspeed: 10m\n",
		"    - name: moat/postfix-bf\n      capacity: 2\n      leakspeed: 10m\n",
		"    - name: moat/postfix-*\n      duration: 2h\n",
		"    - name: moat/dovecot-bf\n      capacity: 4\n      leakspeed: 10m\n",
		"allowlist:\n    - 203.0.113.7\n    - 198.51.100.0/24\n",
		"profiles: /out/profiles.yaml\n",
		"acquisition:\n    dir: /out/acquis.d\n",
		"recidive has no jail of its own",
		"filter asterisk has no moat equivalent",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("fragment lacks %q:\n%s", want, text)
		}
	}
	// sshd escalates: its bantime goes to a profile, not an override.
	if strings.Contains(text, "moat/ssh-*\n      duration") {
		t.Errorf("sshd has bantime.increment, yet a fixed duration:\n%s", text)
	}
	files := map[string]string{}
	for _, f := range r.Files {
		files[f.Name] = string(f.Data)
	}
	prof := files["profiles.yaml"]
	for _, want := range []string{"name: fail2ban_sshd", "name: fail2ban_dovecot", "min(int(3600 * 1 * 2 ** min(GetDecisionsCount(Alert.GetValue()), 20)), 604800)"} {
		if !strings.Contains(prof, want) {
			t.Errorf("profiles.yaml lacks %q:\n%s", want, prof)
		}
	}
	if strings.Contains(prof, "fail2ban_postfix") {
		t.Errorf("postfix turned bantime.increment off, yet escalates:\n%s", prof)
	}
	if a := files["acquis.d/fail2ban-syslog-journal.yaml"]; !strings.Contains(a, "SYSLOG_IDENTIFIER=dovecot") || !strings.Contains(a, "source: journalctl") {
		t.Errorf("dovecot (backend systemd) acquisition:\n%s", a)
	}
	if a := files["acquis.d/fail2ban-syslog.yaml"]; !strings.Contains(a, "/var/log/sshd-extra.log") || !strings.Contains(a, "/var/log/mail.log") || !strings.Contains(a, "source: file") {
		t.Errorf("file acquisition:\n%s", a)
	}
}

// fail2banSchema is the bans table as fail2ban 1.0 creates it
// (server/database.py).
const fail2banSchema = `CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);
CREATE TABLE bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL, bancount INTEGER NOT NULL default 1, data JSON, FOREIGN KEY(jail) REFERENCES jails(name));
CREATE INDEX bans_jail_timeofban_ip ON bans(jail, timeofban);`

func TestReadBans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fail2ban.sqlite3")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := now.Add(-5 * time.Minute).Unix()
	stmts := []string{fail2banSchema,
		`INSERT INTO jails VALUES ('sshd', 1), ('postfix', 1)`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []struct {
		jail, ip       string
		at, bantime, n int64
	}{
		{"sshd", "198.51.100.1", at, 600, 1},              // 5 minutes left
		{"sshd", "198.51.100.2", at - 3600, 600, 1},       // over
		{"sshd", "2001:db8::3", at, -1, 2},                // forever
		{"postfix", "198.51.100.1", at, 3600, 1},          // the longer of two
		{"postfix", "not-an-address", at, 600, 1},         // skipped
		{"sshd", "::ffff:198.51.100.4", at, 120 + 300, 1}, // 2 minutes left, mapped
	} {
		if _, err := db.Exec(`INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) VALUES (?, ?, ?, ?, ?, '{}')`, b.jail, b.ip, b.at, b.bantime, b.n); err != nil {
			t.Fatal(err)
		}
	}
	r := &importer.Result{}
	if err := decisions(context.Background(), r, path, now); err != nil {
		t.Fatal(err)
	}
	want := []importer.Decision{
		{Value: "198.51.100.1", Duration: "3300s", Reason: "fail2ban jail postfix", Scenario: "fail2ban/postfix"},
		{Value: "198.51.100.4", Duration: "120s", Reason: "fail2ban jail sshd", Scenario: "fail2ban/sshd"},
		{Value: "2001:db8::3", Duration: "forever", Reason: "fail2ban jail sshd", Scenario: "fail2ban/sshd"},
	}
	if d := cmp.Diff(want, r.Decisions); d != "" {
		t.Errorf("decisions (-want +got):\n%s", d)
	}
	if len(r.Report) != 1 || !strings.Contains(r.Report[0].Message, "not-an-address") {
		t.Errorf("report %v: want the bad row named", r.Report)
	}

	// A host where fail2ban never ran has no database: a note, no error.
	r = &importer.Result{}
	if err := decisions(context.Background(), r, filepath.Join(t.TempDir(), "none.sqlite3"), now); err != nil || len(r.Report) != 1 {
		t.Errorf("missing database: error %v, report %v", err, r.Report)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
