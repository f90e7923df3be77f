package testutil

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	// The decisions are written by hand when crowdsec cannot run.
	_ "github.com/mattn/go-sqlite3"
)

// Where Debian's crowdsec package puts things.
const (
	debianCrowdSecConfig  = "/etc/crowdsec"
	debianCrowdSecShare   = "/usr/share/crowdsec"
	debianCrowdSecPostin  = "/var/lib/dpkg/info/crowdsec.postinst"
	debianCrowdSecVarLib  = "/var/lib/crowdsec/"
	debianCrowdSecEtcPath = "/etc/crowdsec/"
)

// CrowdSec is a copy of the configuration Debian's crowdsec package
// installs, in a temporary directory and set up as the package's postinst
// sets up a first installation: the offline hub (links into
// /usr/share/crowdsec/hub), the items upstream recommends enabled by links
// from the configuration directory, the data files, and a database with a
// registered machine. config.yaml names the copy's paths.
type CrowdSec struct {
	// ConfigDir is the copy of /etc/crowdsec; Config its config.yaml.
	ConfigDir, Config string
	// HubDir, DataDir and DB are the copies of /var/lib/crowdsec's.
	HubDir, DataDir, DB string
	logDir              string
}

// DebianCrowdSec builds the copy, or skips the test, loudly, when the
// crowdsec package is not installed.
func DebianCrowdSec(tb testing.TB) *CrowdSec {
	tb.Helper()
	for _, p := range []string{"/usr/bin/crowdsec", "/usr/bin/cscli", filepath.Join(debianCrowdSecConfig, "config.yaml"), filepath.Join(debianCrowdSecShare, "hub", ".index.json")} {
		if _, err := os.Stat(p); err != nil {
			tb.Skipf("SKIPPED: Debian's crowdsec package is not installed (%s: %v); apt-get install crowdsec", p, err)
		}
	}
	root := tb.TempDir()
	c := &CrowdSec{
		ConfigDir: filepath.Join(root, "etc", "crowdsec"),
		HubDir:    filepath.Join(root, "var", "lib", "crowdsec", "hub"),
		DataDir:   filepath.Join(root, "var", "lib", "crowdsec", "data"),
		logDir:    filepath.Join(root, "log"),
	}
	c.Config = filepath.Join(c.ConfigDir, "config.yaml")
	c.DB = filepath.Join(c.DataDir, "crowdsec.db")
	for _, d := range []string{c.ConfigDir, c.HubDir, c.DataDir, c.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	c.copyConfig(tb)
	// disable_online_hub: the hub's directories are links into the
	// package's snapshot.
	for _, it := range []string{"blockers", "collections", "parsers", "postoverflows", "scenarios", ".index.json"} {
		if err := os.Symlink(filepath.Join(debianCrowdSecShare, "hub", it), filepath.Join(c.HubDir, it)); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := os.Lstat(filepath.Join(c.ConfigDir, "collections")); err != nil {
		tb.Logf("%s enables no hub item (the package's postinst stops at cscli capi register without a network): enabling %s's UPSTREAM_ITEMS as its first installation does", debianCrowdSecConfig, debianCrowdSecPostin)
		c.enableUpstreamItems(tb)
	}
	data, err := filepath.Glob(filepath.Join(debianCrowdSecShare, "data", "*"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range data {
		copyFile(tb, f, filepath.Join(c.DataDir, filepath.Base(f)))
	}
	c.Cscli(tb, "machines", "add", "--auto", "--force")
	return c
}

// rebase moves a path of the live installation into the copy.
func (c *CrowdSec) rebase(p string) string {
	root := filepath.Dir(filepath.Dir(c.ConfigDir))
	p = strings.ReplaceAll(p, debianCrowdSecEtcPath, c.ConfigDir+"/")
	return strings.ReplaceAll(p, debianCrowdSecVarLib, filepath.Join(root, "var", "lib", "crowdsec")+"/")
}

// copyConfig copies /etc/crowdsec, links as links (into the copy), files
// it may not read left out, and points config.yaml (and .local) at the
// copy.
func (c *CrowdSec) copyConfig(tb testing.TB) {
	tb.Helper()
	err := filepath.WalkDir(debianCrowdSecConfig, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(debianCrowdSecConfig, p)
		dst := filepath.Join(c.ConfigDir, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(c.rebase(target), dst)
		}
		b, err := os.ReadFile(p)
		if os.IsPermission(err) {
			tb.Logf("%s: not readable, left out of the copy", p)
			return nil
		}
		if err != nil {
			return err
		}
		if rel == "config.yaml" || rel == "config.yaml.local" {
			s := c.rebase(string(b))
			s = strings.Replace(s, "log_dir: /var/log/", "log_dir: "+c.logDir+"/", 1)
			s = strings.Replace(s, "daemonize: true", "daemonize: false", 1)
			b = []byte(s)
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// enableUpstreamItems does what the postinst does on a first
// installation: a link from the configuration directory, vendor stripped,
// to each hub file of its UPSTREAM_ITEMS list.
func (c *CrowdSec) enableUpstreamItems(tb testing.TB) {
	tb.Helper()
	f, err := os.Open(debianCrowdSecPostin)
	if err != nil {
		tb.Fatalf("the items to enable come from the package's postinst: %v", err)
	}
	defer f.Close()
	var items []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "UPSTREAM_ITEMS=$(cat <<EOF"):
			in = true
		case in && l == "EOF":
			in = false
		case in && strings.TrimSpace(l) != "":
			items = append(items, strings.TrimSpace(l))
		}
	}
	if err := sc.Err(); err != nil || len(items) == 0 {
		tb.Fatalf("%s: no UPSTREAM_ITEMS list (%v)", debianCrowdSecPostin, err)
	}
	for _, it := range items {
		target := filepath.Join(c.HubDir, it)
		if _, err := os.Stat(target); err != nil {
			continue // the postinst only links what the hub has
		}
		// parsers/s01-parse/crowdsecurity/x.yaml -> parsers/s01-parse/x.yaml
		link := filepath.Join(c.ConfigDir, filepath.Dir(filepath.Dir(it)), filepath.Base(it))
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			tb.Fatal(err)
		}
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Cscli runs Debian's cscli on the copy.
func (c *CrowdSec) Cscli(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("cscli", append([]string{"-c", c.Config}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("cscli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CrowdSecDecision is a decision for AddDecisions.
type CrowdSecDecision struct {
	// Value is an address, or a range when it has a /.
	Value    string
	Type     string // "" is ban
	Duration time.Duration
	Reason   string
}

// AddDecisions adds decisions as an administrator does, with cscli
// decisions add against Debian's crowdsec running its local API, inside
// a network namespace of its own (crowdsec tries to reach its central
// API). Where no namespace can be made (no root, no user namespaces) the
// rows go into the database crowdsec created as cscli would write them,
// and the test log says so.
func (c *CrowdSec) AddDecisions(tb testing.TB, ds []CrowdSecDecision) {
	tb.Helper()
	var script strings.Builder
	script.WriteString("set -e\nip link set lo up\n")
	fmt.Fprintf(&script, "crowdsec -c %s -no-cs >%s 2>&1 &\npid=$!\n", quote(c.Config), quote(filepath.Join(c.logDir, "lapi.out")))
	fmt.Fprintf(&script, "trap 'kill $pid; wait $pid || true' EXIT\n")
	fmt.Fprintf(&script, "i=0; until cscli -c %s lapi status >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 3; sleep 0.1; done\n", quote(c.Config))
	for _, d := range ds {
		scope := "--ip"
		if strings.Contains(d.Value, "/") {
			scope = "--range"
		}
		typ := d.Type
		if typ == "" {
			typ = "ban"
		}
		fmt.Fprintf(&script, "cscli -c %s decisions add %s %s --type %s --duration %s --reason %s\n",
			quote(c.Config), scope, quote(d.Value), quote(typ), quote(d.Duration.String()), quote(d.Reason))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unshare := []string{"unshare", "--net"}
	if os.Geteuid() != 0 {
		unshare = append(unshare, "--map-root-user")
	}
	if err := exec.CommandContext(ctx, unshare[0], append(unshare[1:], "true")...).Run(); err != nil {
		tb.Logf("no network namespace for crowdsec (%v): writing the decisions into its database by hand", err)
		c.insertDecisions(tb, ds)
		return
	}
	cmd := exec.CommandContext(ctx, unshare[0], append(unshare[1:], "sh", "-c", script.String())...)
	if out, err := cmd.CombinedOutput(); err != nil {
		lapi, _ := os.ReadFile(filepath.Join(c.logDir, "lapi.out"))
		tb.Fatalf("crowdsec and cscli decisions add in a network namespace: %v\n%s\ncrowdsec:\n%s", err, out, lapi)
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// insertDecisions writes decisions as CrowdSec 1.4's cscli decisions add
// has the local API store them: an alert and its decision, origin cscli.
func (c *CrowdSec) insertDecisions(tb testing.TB, ds []CrowdSecDecision) {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+c.DB)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	const ts = "2006-01-02 15:04:05.999999999-07:00"
	now := time.Now().UTC()
	for _, d := range ds {
		scope, typ := "Ip", d.Type
		if strings.Contains(d.Value, "/") {
			scope = "Range"
		}
		if typ == "" {
			typ = "ban"
		}
		res, err := db.Exec(`INSERT INTO alerts(created_at, updated_at, scenario, message, events_count, started_at, stopped_at, source_scope, source_value, simulated)
VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, false)`, now.Format(ts), now.Format(ts), d.Reason, d.Reason, now.Format(ts), now.Format(ts), scope, d.Value)
		if err != nil {
			tb.Fatal(err)
		}
		alert, _ := res.LastInsertId()
		until := now.Add(d.Duration).Truncate(time.Second)
		if _, err := db.Exec(`INSERT INTO decisions(created_at, updated_at, until, scenario, type, scope, value, origin, simulated, alert_decisions)
VALUES (?, ?, ?, ?, ?, ?, ?, 'cscli', false, ?)`, now.Format(ts), now.Format(ts), until.Format(ts), d.Reason, typ, scope, d.Value, alert); err != nil {
			tb.Fatal(err)
		}
	}
}
