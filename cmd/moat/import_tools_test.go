package main

import (
	"bufio"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/enforce/api"
)

// debianFail2ban is the configuration Debian's fail2ban package installs.
func debianFail2ban(t *testing.T) string {
	t.Helper()
	const dir = "/etc/fail2ban"
	if _, err := os.Stat(filepath.Join(dir, "jail.conf")); err != nil {
		t.Skipf("SKIPPED: %s/jail.conf is missing: apt-get install fail2ban", dir)
	}
	return dir
}

// withTestContent rewrites an imported moat.yaml so that hub content,
// patterns and state come from the checkout and a temporary directory,
// whatever is installed on the machine, and returns the new file.
func withTestContent(t *testing.T, imported string) string {
	t.Helper()
	raw, err := os.ReadFile(imported)
	must(t, err)
	var doc map[string]any
	must(t, yaml.Unmarshal(raw, &doc))
	if doc == nil {
		doc = map[string]any{}
	}
	root, dir := repoRoot(t), t.TempDir()
	hub, _ := doc["hub"].(map[string]any)
	if hub == nil {
		hub = map[string]any{}
	}
	hub["dir"] = filepath.Join(root, "packaging", "hub")
	hub["patterns"] = filepath.Join(root, "packaging", "patterns")
	hub["data"] = filepath.Join(dir, "data")
	doc["hub"] = hub
	doc["state_dir"] = filepath.Join(dir, "state")
	if _, ok := doc["profiles"]; !ok {
		doc["profiles"] = filepath.Join(root, "packaging", "profiles.yaml")
	}
	out, err := yaml.Marshal(doc)
	must(t, err)
	path := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(path, out, 0o644))
	return path
}

// fail2banDB creates fail2ban's database at path: with fail2ban's own code
// when its Python module is installed (the schema it really writes), else
// with the bans table as fail2ban 1.0 declares it.
func fail2banDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	const create = `from fail2ban.server.database import Fail2BanDb
import sys
Fail2BanDb(sys.argv[1])`
	if out, err := exec.Command("/usr/bin/python3", "-c", create, path).CombinedOutput(); err != nil {
		t.Logf("fail2ban's Python module cannot create the database (%v: %s); using its bans schema", err, out)
		_ = os.Remove(path)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	must(t, err)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL, bancount INTEGER NOT NULL default 1, data JSON, FOREIGN KEY(jail) REFERENCES jails(name));`); err != nil {
		t.Fatal(err)
	}
	return db
}

// Debian's default fail2ban configuration imports into a configuration
// moat config check accepts; fail2ban's active bans become the decisions
// moat decisions import reads, and the ended ones are left out.
func TestImportFail2banDebianDefaults(t *testing.T) {
	src := debianFail2ban(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "fail2ban.sqlite3")
	db := fail2banDB(t, dbPath)
	now := time.Now().Unix()
	for _, b := range []struct {
		ip          string
		at, bantime int64
	}{
		{"198.51.100.10", now - 60, 600},
		{"198.51.100.11", now - 7200, 600}, // ended an hour ago
		{"2001:db8::12", now - 60, -1},
		{"198.51.100.13", now - 60, 86400},
	} {
		_, err := db.Exec(`INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) VALUES ('sshd', ?, ?, ?, 1, '{"matches": []}')`, b.ip, b.at, b.bantime)
		must(t, err)
	}
	out := filepath.Join(dir, "out")
	code, stdout, stderr := runMoat(t, "", "import", "fail2ban", src, "--out", out, "--db", dbPath)
	if code != exitOK {
		t.Fatalf("moat import fail2ban: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "3 active bans") {
		t.Errorf("output %q: want 3 active bans", stdout)
	}
	cfg := withTestContent(t, filepath.Join(out, "moat.yaml"))
	code, _, stderr = runMoat(t, "", "config", "check", "--config", cfg)
	if code != exitOK || stderr != "" {
		raw, _ := os.ReadFile(cfg)
		t.Fatalf("moat config check of the import: exit %d: %s\n%s", code, stderr, raw)
	}
	code, stdout, stderr = runMoat(t, "", "scenarios", "list", "-o", "json", "--config", cfg)
	if code != exitOK {
		t.Fatalf("moat scenarios list: exit %d: %s", code, stderr)
	}
	// Debian's jail.conf: maxretry 5, findtime 10m, bantime 10m.
	for _, want := range []string{`"capacity": 4`, `"leakspeed": "10m"`, `"duration": "10m"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("scenarios list lacks %s:\n%s", want, stdout)
		}
	}

	got := map[string]string{}
	for _, e := range importedDecisions(t, out) {
		got[e.Value] = e.Duration
		if e.Scenario != "fail2ban/sshd" {
			t.Errorf("%s: scenario %q, want fail2ban/sshd", e.Value, e.Scenario)
		}
	}
	if len(got) != 3 || got["2001:db8::12"] != "forever" {
		t.Fatalf("decisions %v: want 198.51.100.10, 198.51.100.13 and 2001:db8::12 (forever)", got)
	}
	for ip, lo := range map[string]time.Duration{"198.51.100.10": 500 * time.Second, "198.51.100.13": 86000 * time.Second} {
		d, err := time.ParseDuration(got[ip])
		if err != nil || d < lo || d > lo+time.Duration(float64(lo)*0.25) {
			t.Errorf("%s: duration %q, want the rest of its ban (about %v)", ip, got[ip], lo)
		}
	}
}

// The sshd jail Debian enables, imported, catches in the corpus the
// attackers fail2ban catches (every source truth.tsv says to ban) and no
// other.
func TestImportFail2banReplaysLikeTheJail(t *testing.T) {
	src := debianFail2ban(t)
	corpus := genCorpus(t, "20k")
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := runMoat(t, "", "import", "fail2ban", src, "--out", out, "--db", ""); code != exitOK {
		t.Fatalf("moat import fail2ban: exit %d: %s", code, stderr)
	}
	cfg := withTestContent(t, filepath.Join(out, "moat.yaml"))
	got := replayedSources(t, "", "--config", cfg, filepath.Join(corpus, "auth.log"))

	f, err := os.Open(filepath.Join(corpus, "truth.tsv"))
	must(t, err)
	defer f.Close()
	want := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) >= 4 && cols[0] == "auth.log" {
			want[cols[1]] = cols[3] == "yes"
		}
	}
	var missed, falseBans []string
	toBan := 0
	for ip, ban := range want {
		if ban {
			toBan++
			if !got[ip] {
				missed = append(missed, ip)
			}
		}
	}
	for ip := range got {
		if !want[ip] {
			falseBans = append(falseBans, ip)
		}
	}
	sort.Strings(missed)
	sort.Strings(falseBans)
	t.Logf("%d sources to ban, %d caught, %d missed, %d false bans", toBan, toBan-len(missed), len(missed), len(falseBans))
	if toBan == 0 || len(missed) > 0 || len(falseBans) > 0 {
		t.Fatalf("missed %v; false bans %v", missed, falseBans)
	}
}

// importedDecisions reads the decisions.csv an import wrote into out as
// moat decisions import would, and wants every line of it taken.
func importedDecisions(t *testing.T, out string) []api.ImportEntry {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "decisions.csv"))
	must(t, err)
	in, err := parseImport("decisions.csv", raw, detectFormat("decisions.csv", raw), importDefaults{duration: "4h", typ: "ban"})
	must(t, err)
	if len(in.skipped) != 0 {
		t.Errorf("moat decisions import skips %+v", in.skipped)
	}
	return in.entries
}
