package crowdsec

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/internal/importer"
)

// schema is the decisions and bouncers tables as CrowdSec 1.4.6 creates
// them (read from a database Debian's cscli made), and the allowlist
// tables of CrowdSec 1.6, which 1.4.6 lacks (from the ent schema's
// columns).
const schema = "CREATE TABLE `decisions` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NULL, `updated_at` datetime NULL, `until` datetime NULL, `scenario` text NOT NULL, `type` text NOT NULL, `start_ip` integer NULL, `end_ip` integer NULL, `start_suffix` integer NULL, `end_suffix` integer NULL, `ip_size` integer NULL, `scope` text NOT NULL, `value` text NOT NULL, `origin` text NOT NULL, `simulated` bool NOT NULL DEFAULT false, `alert_decisions` integer NULL);\n" +
	"CREATE TABLE `bouncers` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NULL, `updated_at` datetime NULL, `name` text NOT NULL, `api_key` text NOT NULL, `revoked` bool NOT NULL, `ip_address` text NULL DEFAULT '', `type` text NULL, `version` text NULL, `until` datetime NULL, `last_pull` datetime NOT NULL, `auth_type` text NOT NULL DEFAULT 'api-key');\n" +
	"CREATE TABLE `allow_lists` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `name` text NOT NULL, `from_console` bool NOT NULL, `description` text NULL, `allowlist_id` text NULL);\n" +
	"CREATE TABLE `allow_list_items` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `created_at` datetime NOT NULL, `updated_at` datetime NOT NULL, `expires_at` datetime NULL, `comment` text NULL, `value` text NOT NULL, `start_ip` integer NULL, `end_ip` integer NULL, `start_suffix` integer NULL, `end_suffix` integer NULL, `ip_size` integer NULL);\n" +
	"CREATE TABLE `allow_list_allowlist_items` (`allow_list_id` integer NOT NULL, `allow_list_item_id` integer NOT NULL, PRIMARY KEY (`allow_list_id`, `allow_list_item_id`));\n"

// entTime writes a time as CrowdSec's ent driver stores it in SQLite.
func entTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999999-07:00") }

func TestDatabase(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "crowdsec.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	must(t, err)
	defer db.Close()
	_, err = db.Exec(schema)
	must(t, err)
	decisions := []struct {
		until                               time.Time
		scenario, typ, scope, value, origin string
		simulated                           bool
	}{
		{now.Add(time.Hour), "crowdsecurity/ssh-bf", "ban", "Ip", "192.0.2.10", "crowdsec", false},
		{now.Add(-time.Second), "crowdsecurity/ssh-bf", "ban", "Ip", "192.0.2.11", "crowdsec", false},
		{now.Add(2 * time.Hour), "manual", "ban", "Range", "198.51.100.7/24", "cscli", false},
		{now.Add(time.Hour), "manual", "captcha", "Ip", "192.0.2.12", "cscli", false},
		{now.Add(time.Hour), "manual", "ban", "Country", "FR", "cscli", false},
		{now.Add(time.Hour), "ssh:bruteforce", "ban", "Ip", "192.0.2.13", "CAPI", false},
		{now.Add(time.Hour), "crowdsecurity/ssh-bf", "ban", "Ip", "192.0.2.14", "crowdsec", true},
		{now.Add(3 * time.Hour), "crowdsecurity/ssh-slow-bf", "ban", "Ip", "::ffff:192.0.2.10", "crowdsec", false},
		{now.Add(time.Hour), "manual", "ban", "Ip", "not-an-ip", "cscli", false},
		{now.Add(90 * time.Minute), "crowdsecurity/ssh-bf", "ban", "Ip", "2001:db8::1", "crowdsec", false},
	}
	for _, d := range decisions {
		_, err := db.Exec(`INSERT INTO decisions(created_at, updated_at, until, scenario, type, scope, value, origin, simulated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			entTime(now), entTime(now), entTime(d.until), d.scenario, d.typ, d.scope, d.value, d.origin, d.simulated)
		must(t, err)
	}
	_, err = db.Exec(`INSERT INTO allow_lists(id, created_at, updated_at, name, from_console) VALUES (1, ?, ?, 'office', false);
INSERT INTO allow_list_items(id, created_at, updated_at, expires_at, comment, value) VALUES
 (1, ?, ?, NULL, 'the office', '203.0.113.0/24'),
 (2, ?, ?, ?, '', '203.0.113.99'),
 (3, ?, ?, ?, 'gone', '203.0.113.98'),
 (4, ?, ?, NULL, '', '127.0.0.1');
INSERT INTO allow_list_allowlist_items VALUES (1, 1), (1, 2), (1, 3), (1, 4);
INSERT INTO bouncers(name, api_key, revoked, last_pull) VALUES ('firewall', 'h', false, ?), ('old', 'h', true, ?);`,
		entTime(now), entTime(now), entTime(now), entTime(now), entTime(now), entTime(now), entTime(now.Add(24*time.Hour)),
		entTime(now), entTime(now), entTime(now.Add(-time.Hour)), entTime(now), entTime(now), entTime(now), entTime(now))
	must(t, err)

	r := &importer.Result{}
	must(t, database(context.Background(), r, path, now))
	want := []importer.Decision{
		{Value: "192.0.2.10", Duration: "10800s", Reason: "CrowdSec decision #8 (crowdsec)", Scenario: "crowdsecurity/ssh-slow-bf"},
		{Value: "198.51.100.0/24", Duration: "7200s", Reason: "CrowdSec decision #3 (cscli)", Scenario: "manual"},
		{Value: "2001:db8::1", Duration: "5400s", Reason: "CrowdSec decision #10 (crowdsec)", Scenario: "crowdsecurity/ssh-bf"},
	}
	if d := cmp.Diff(want, r.Decisions); d != "" {
		t.Errorf("decisions (-want +got):\n%s", d)
	}
	allow := []importer.AllowEntry{
		{Value: "203.0.113.0/24", Comment: "CrowdSec allowlist office: the office"},
		{Value: "203.0.113.99", Comment: "CrowdSec allowlist office", Expires: "2026-03-02T12:00:00Z"},
	}
	if d := cmp.Diff(allow, r.Fragment.Allowlist); d != "" {
		t.Errorf("allowlist (-want +got):\n%s", d)
	}
	report := notesText(r)
	for _, n := range []string{
		"1 decision(s) expired, not imported: #2 ban Ip:192.0.2.11",
		"1 decision(s) of type captcha (only bans are carried over), not imported: #4",
		"of scope Country (only Ip and Range are carried over), not imported: #5",
		"community blocklists",
		"1 decision(s) simulated, not imported: #7",
		"whose value is not an address, not imported: #9",
		"1 expired allowlist item(s)",
		"bouncers registered with CrowdSec (firewall)",
	} {
		if !strings.Contains(report, n) {
			t.Errorf("report lacks %q:\n%s", n, report)
		}
	}
}

// A long list of decisions left out is named up to a bound, then
// counted.
func TestDecisionsReportBound(t *testing.T) {
	now := time.Now()
	var rows []Decision
	for i := range maxListed + 5 {
		rows = append(rows, Decision{ID: int64(i + 1), Until: now.Add(-time.Minute), Type: "ban", Scope: "Ip", Value: "192.0.2.1", Origin: "crowdsec"})
	}
	r := &importer.Result{}
	decisions(r, "db", rows, now)
	if len(r.Report) != 1 || !strings.Contains(r.Report[0].Message, "and 5 more") || strings.Count(r.Report[0].Message, "#") != maxListed {
		t.Errorf("report %v: want one note naming %d and counting 5 more", r.Report, maxListed)
	}
}
