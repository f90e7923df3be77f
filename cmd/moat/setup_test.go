package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/detect/setup"
)

// setupHost is a Debian host tree: ssh, postfix, dovecot and haproxy
// installed, nginx removed (its log stays behind), and mail.log.
func setupHost(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\n\nPackage: postfix\nStatus: install ok installed\n\n" +
			"Package: dovecot-core\nStatus: install ok installed\n\nPackage: haproxy\nStatus: install ok installed\n\n" +
			"Package: nginx\nStatus: deinstall ok config-files\n",
		"lib/systemd/system/ssh.service": "[Unit]\n",
		"var/log/mail.log":               "x\n",
		"var/log/nginx/access.log":       "x\n",
	}
	for p, body := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte(body), 0o644))
	}
	return root
}

// setupHubSource is a hub source offering crowdsecurity/haproxy.
func setupHubSource(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	files := map[string]string{
		"collections/crowdsecurity/haproxy.yaml":            "name: crowdsecurity/haproxy\nparsers:\n  - crowdsecurity/haproxy-logs\n",
		"parsers/s01-parse/crowdsecurity/haproxy-logs.yaml": "name: crowdsecurity/haproxy-logs\nfilter: \"evt.Parsed.program == 'haproxy'\"\nonsuccess: next_stage\nstatics:\n  - meta: log_type\n    value: haproxy\n",
	}
	for p, body := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(src, p), []byte(body), 0o644))
	}
	return src
}

func runSetup(t *testing.T, args ...string) setupResult {
	t.Helper()
	code, out, errOut := runMoat(t, "", append([]string{"setup", "-o", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("moat setup %q: exit %d\n%s\n%s", args, code, out, errOut)
	}
	var res setupResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("moat setup -o json: %v\n%s", err, out)
	}
	return res
}

func serviceLines(res setupResult) []string {
	var out []string
	for _, s := range res.Plan.Services {
		out = append(out, s.Name+" "+s.Status)
	}
	return out
}

// TestSetupCommand: a dry run plans and changes nothing; the real run
// writes acquis.d/moat-setup.yaml and installs the hub collection moat
// does not ship, and moat config check accepts the result; a second run
// finds everything in place.
func TestSetupCommand(t *testing.T) {
	repo := repoRoot(t)
	dir := t.TempDir()
	root := setupHost(t)
	src := setupHubSource(t, dir)
	acquis := filepath.Join(dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(filepath.Join(acquis, "sshd.yaml"), []byte("source: journalctl\njournalctl_filter: [SYSLOG_IDENTIFIER=sshd]\nlabels:\n  type: syslog\n"), 0o644))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  dir: "+repo+"/packaging/hub\n  patterns: "+repo+"/packaging/patterns\n  data: "+dir+"/data\n"+
		"acquisition:\n  dir: "+acquis+"\nprofiles: "+repo+"/packaging/profiles.yaml\n"), 0o644))
	common := []string{"-c", cfg, "--root", root, "--source", src}

	res := runSetup(t, append([]string{"--dry-run"}, common...)...)
	wantServices := "sshd configured,postfix add,dovecot add,haproxy add"
	if got := strings.Join(serviceLines(res), ","); got != wantServices {
		t.Errorf("dry run services: %s, want %s", got, wantServices)
	}
	var entries []string
	for _, e := range res.Plan.Acquisition {
		entries = append(entries, e.Name+" "+strings.Join(e.Filenames, ","))
	}
	if got, want := strings.Join(entries, "; "), "setup-postfix-dovecot /var/log/mail.log; setup-haproxy /var/log/haproxy.log"; got != want {
		t.Errorf("dry run acquisition: %s, want %s", got, want)
	}
	if got := res.Plan.Installs(); len(got) != 1 || got[0] != "crowdsecurity/haproxy" {
		t.Errorf("dry run installs %q", got)
	}
	if !res.DryRun || len(res.Written) != 0 || len(res.HubChanges) != 0 {
		t.Errorf("dry run reports changes: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(acquis, setup.OwnFile)); !os.IsNotExist(err) {
		t.Errorf("the dry run wrote the acquisition file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state/hub")); !os.IsNotExist(err) {
		t.Errorf("the dry run installed: %v", err)
	}

	res = runSetup(t, common...)
	if want := []string{filepath.Join(acquis, setup.OwnFile)}; strings.Join(res.Written, ",") != want[0] {
		t.Errorf("written %q, want %q", res.Written, want)
	}
	found := false
	for _, c := range res.HubChanges {
		found = found || (c.Ref == "collections/crowdsecurity/haproxy" && c.Action == hubstore.Installed)
	}
	if !found {
		t.Errorf("haproxy's collection not installed: %+v", res.HubChanges)
	}
	if code, out, errOut := runMoat(t, "", "config", "check", "-c", cfg); code != exitOK {
		t.Fatalf("config check after setup: exit %d\n%s\n%s", code, out, errOut)
	}
	written, err := os.ReadFile(filepath.Join(acquis, setup.OwnFile))
	must(t, err)

	// Again: the collection is loaded now and the file comes out the same.
	res = runSetup(t, common...)
	for _, it := range res.Plan.Hub {
		if it.Name == "crowdsecurity/haproxy" && it.Action != setup.HubInstalled {
			t.Errorf("second run: haproxy's collection %s", it.Action)
		}
	}
	again, err := os.ReadFile(filepath.Join(acquis, setup.OwnFile))
	must(t, err)
	if string(again) != string(written) {
		t.Errorf("a second run changed the file:\n%s\nthen\n%s", written, again)
	}
}

func TestSetupCommandTable(t *testing.T) {
	repo := repoRoot(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.MkdirAll(filepath.Join(dir, "acquis.d"), 0o755))
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  dir: "+repo+"/packaging/hub\n  patterns: "+repo+"/packaging/patterns\n"+
		"acquisition:\n  dir: "+dir+"/acquis.d\n"), 0o644))
	// An explicit --source that does not exist is not quietly dropped.
	if code, _, errOut := runMoat(t, "", "setup", "--dry-run", "-c", cfg, "--root", setupHost(t), "--source", filepath.Join(dir, "none")); code == exitOK {
		t.Errorf("a missing --source: exit 0: %s", errOut)
	}
	code, out, errOut := runMoat(t, "", "setup", "--dry-run", "-o", "table", "-c", cfg, "--root", setupHost(t), "--source", setupHubSource(t, dir))
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"SERVICE", "postfix", "setup-postfix-dovecot", "crowdsecurity/haproxy", "install", "nothing changed"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("table output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}
}

func TestSetupCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"setup", "--dry-run", "--root", filepath.Join(t.TempDir(), "missing")},
		{"setup", "--dry-run", "-o", "yaml"},
		{"setup", "extra-argument"},
	} {
		if code, _, errOut := runMoat(t, "", args...); code != exitUsage {
			t.Errorf("moat %q: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
}
