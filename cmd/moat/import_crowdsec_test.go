package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// importCrowdSec imports the CrowdSec configuration of cs into a
// directory, points the result at the checkout's content and a temporary
// state (withTestContent), runs the moat hub install the import printed
// against that state, and returns the import's directory and the
// configuration to use.
func importCrowdSec(t *testing.T, cs *testutil.CrowdSec, args ...string) (out, cfg string) {
	t.Helper()
	out = filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runMoat(t, "", append([]string{"import", "crowdsec", cs.ConfigDir, "--out", out}, args...)...)
	if code != exitOK {
		t.Fatalf("moat import crowdsec: exit %d: %s", code, stderr)
	}
	cfg = withTestContent(t, filepath.Join(out, "moat.yaml"))
	var install []string
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "moat" && f[1] == "hub" && f[2] == "install" {
			install = f[1:]
		}
	}
	if install == nil {
		t.Fatalf("moat import crowdsec printed no moat hub install:\n%s", stdout)
	}
	for i := range install {
		if install[i] == "--config" {
			install[i+1] = cfg
		}
	}
	if code, _, stderr := runMoat(t, "", append(install, "-o", "raw")...); code != exitOK {
		t.Fatalf("moat %s: exit %d: %s", strings.Join(install, " "), code, stderr)
	}
	return out, cfg
}

// Debian's default CrowdSec configuration, with decisions CrowdSec itself
// stored, imports into a configuration moat config check accepts once the
// hub items it names are installed; the active ban and the range become
// decisions with the rest of their time, the ended ban and the captcha
// are reported and left out.
func TestImportCrowdSecDebianDefaults(t *testing.T) {
	cs := testutil.DebianCrowdSec(t)
	cs.AddDecisions(t, []testutil.CrowdSecDecision{
		{Value: "192.0.2.10", Duration: 4 * time.Hour, Reason: "test/active"},
		{Value: "192.0.2.11", Duration: time.Second, Reason: "test/ended"},
		{Value: "198.51.100.0/24", Duration: 2 * time.Hour, Reason: "test/range"},
		{Value: "192.0.2.12", Type: "captcha", Duration: 4 * time.Hour, Reason: "test/captcha"},
	})
	time.Sleep(2 * time.Second) // the one-second ban has ended
	out, cfg := importCrowdSec(t, cs)

	report, err := os.ReadFile(filepath.Join(out, "report.txt"))
	must(t, err)
	code, _, stderr := runMoat(t, "", "config", "check", "--config", cfg)
	if code != exitOK {
		raw, _ := os.ReadFile(cfg)
		t.Fatalf("moat config check of the import: exit %d: %s\n%s", code, stderr, raw)
	}
	// Debian's hub snapshot lacks a data file one of its scenarios names:
	// CrowdSec runs the scenario without it, and so does moat, saying so.
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l != "" && !(strings.Contains(l, "data file") && strings.Contains(l, "does not exist")) {
			t.Errorf("moat config check warns: %s", l)
		}
	}
	if stderr != "" && !strings.Contains(string(report), "--allow-missing-data") {
		t.Errorf("moat config check warns of missing data, the report does not say why:\n%s", report)
	}
	for _, want := range []string{"192.0.2.11", "expired", "192.0.2.12", "captcha", "./tests/nginx/nginx.log", "parsers/crowdsecurity/whitelists"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.txt lacks %q:\n%s", want, report)
		}
	}
	effective, err := os.ReadFile(filepath.Join(out, "moat.yaml"))
	must(t, err)
	for _, want := range []string{"collections/crowdsecurity/linux", "10.0.0.0/8", "acquis.d", "profiles.yaml"} {
		if !strings.Contains(string(effective), want) {
			t.Errorf("moat.yaml lacks %s:\n%s", want, effective)
		}
	}

	got := map[string]string{}
	for _, e := range importedDecisions(t, out) {
		got[e.Value] = e.Duration
	}
	want := map[string]time.Duration{"192.0.2.10": 4 * time.Hour, "198.51.100.0/24": 2 * time.Hour}
	if len(got) != len(want) {
		t.Fatalf("decisions %v: want 192.0.2.10 and 198.51.100.0/24 only", got)
	}
	for v, full := range want {
		d, err := time.ParseDuration(got[v])
		if err != nil || d > full || d < full-time.Minute {
			t.Errorf("%s: duration %q, want the rest of its %v", v, got[v], full)
		}
	}
}

// The sshd content Debian's CrowdSec runs, imported, catches in the
// corpus the attackers moat's own sshd content catches, and no other.
func TestImportCrowdSecReplaysLikeMoat(t *testing.T) {
	cs := testutil.DebianCrowdSec(t)
	corpus := genCorpus(t, "20k")
	_, cfg := importCrowdSec(t, cs, "--db", "")
	got := replayedSources(t, "", "--config", cfg, filepath.Join(corpus, "auth.log"))
	want := replayedSources(t, "", filepath.Join(corpus, "auth.log"))
	var missed, extra []string
	for ip := range want {
		if !got[ip] {
			missed = append(missed, ip)
		}
	}
	for ip := range got {
		if !want[ip] {
			extra = append(extra, ip)
		}
	}
	sort.Strings(missed)
	sort.Strings(extra)
	t.Logf("moat's content catches %d sources, the import %d", len(want), len(got))
	if len(want) == 0 || len(missed) > 0 || len(extra) > 0 {
		t.Fatalf("the import misses %v and catches besides %v", missed, extra)
	}
}
