package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// reloadProbe fires on a single failed login as user "reloadprobe": only
// a daemon that loaded it after a reload bans on one line.
const reloadProbe = `type: trigger
name: test/reload-probe
description: "added while moat runs"
filter: "evt.Meta.log_type == 'ssh_failed-auth' && evt.Meta.target_user == 'reloadprobe'"
groupby: evt.Meta.source_ip
blackhole: 1m
labels:
  remediation: true
`

func appendTo(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	defer f.Close()
	for i, l := range lines {
		_, err := fmt.Fprintf(f, "%s victim sshd[%d]: %s\n", time.Now().Format(time.Stamp), 5000+i, l)
		must(t, err)
	}
}

// metricValue reads one sample from the daemon's metrics (-1 if absent).
func metricValue(t *testing.T, ns *testutil.NetNS, sample string) float64 {
	t.Helper()
	out, err := ns.Command("curl", "-sf", "--max-time", "5", "http://127.0.0.1:9641/metrics").Output()
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(string(out))
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// hup sends SIGHUP and waits for the n-th reload's outcome in the log.
func (d *daemonProc) hup(t *testing.T, n int) {
	t.Helper()
	must(t, d.cmd.Process.Signal(syscall.SIGHUP))
	waitFor(t, 30*time.Second, fmt.Sprintf("reload #%d to end", n), func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("the daemon exited on SIGHUP: %v\n%s", err, d.stderr.String())
		default:
		}
		out := d.stderr.String()
		return strings.Count(out, "configuration reloaded")+strings.Count(out, "configuration reload refused") >= n
	})
}

func TestReloadOnSIGHUP(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	h := newE2EHost(t, ns, nil)
	root := repoRoot(t)
	hub := filepath.Join(h.dir, "hub")
	must(t, os.CopyFS(hub, os.DirFS(filepath.Join(root, "packaging", "hub"))))
	cfg, err := os.ReadFile(h.cfgPath)
	must(t, err)
	cfgText := strings.Replace(string(cfg), "dir: "+root+"/packaging/hub", "dir: "+hub, 1)
	must(t, os.WriteFile(h.cfgPath, []byte(cfgText), 0o644))

	d := startDaemon(t, h)

	// 1. Nothing the engine reads changed: the engine, and with it the
	// buckets, stay. Three failures before and three after make six, one
	// more than ssh-bf holds.
	h.appendLines(t, repeatLine("Failed password for root from 198.18.5.1 port 2222 ssh2", 3)...)
	waitFor(t, 10*time.Second, "the first three lines to be read", func() bool {
		return metricValue(t, ns, "moat_engine_lines_total") >= 3
	})
	d.hup(t, 1)
	if out := d.stderr.String(); !strings.Contains(out, `engine="kept, buckets kept"`) {
		t.Fatalf("an unchanged hub was not kept:\n%s", out)
	}
	h.appendLines(t, repeatLine("Failed password for root from 198.18.5.1 port 2223 ssh2", 3)...)
	waitFor(t, 10*time.Second, "the ban counted across the reload", func() bool {
		return strings.Contains(nftSet(t, ns, "ban4"), "198.18.5.1")
	})

	// 2. A new scenario, a new log file and a setting that needs a restart.
	must(t, os.WriteFile(filepath.Join(hub, "scenarios", "moat", "reload-probe.yaml"), []byte(reloadProbe), 0o644))
	second := filepath.Join(h.dir, "auth2.log")
	must(t, os.WriteFile(second, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(h.dir, "acquis.d", "auth2.yaml"), []byte(fmt.Sprintf(
		"source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", second)), 0o644))
	cfgText = strings.Replace(cfgText, "state_dir: "+h.dir+"/state", "state_dir: "+h.dir+"/state2", 1)
	must(t, os.WriteFile(h.cfgPath, []byte(cfgText), 0o644))
	d.hup(t, 2)
	out := d.stderr.String()
	for _, want := range []string{`engine=replaced`, `sources_started=1`, `sources_kept=1`, `needs_restart=[state_dir]`} {
		if !strings.Contains(out, want) {
			t.Errorf("the second reload's log lacks %s", want)
		}
	}
	appendTo(t, second, "Failed password for reloadprobe from 198.18.6.1 port 2224 ssh2")
	waitFor(t, 10*time.Second, "a ban by the new scenario from the new file", func() bool {
		return strings.Contains(nftSet(t, ns, "ban4"), "198.18.6.1")
	})
	if _, err := os.Stat(filepath.Join(h.dir, "state2")); err == nil {
		t.Error("the reload moved state_dir, which needs a restart")
	}

	// 3. A broken configuration is refused, naming file and line; the
	// daemon goes on banning with what it had.
	must(t, os.WriteFile(h.cfgPath, []byte(cfgText+"colour: blue\n"), 0o644))
	badLine := strings.Count(cfgText, "\n") + 1
	d.hup(t, 3)
	if want := fmt.Sprintf("%s:%d:", h.cfgPath, badLine); !strings.Contains(d.stderr.String(), want) {
		t.Fatalf("the refused reload does not name %s:\n%s", want, d.stderr.String())
	}
	h.appendLines(t, repeatLine("Failed password for root from 198.18.7.1 port 2225 ssh2", 6)...)
	appendTo(t, second, "Failed password for reloadprobe from 198.18.6.2 port 2226 ssh2")
	waitFor(t, 10*time.Second, "bans after the refused reload", func() bool {
		set := nftSet(t, ns, "ban4")
		return strings.Contains(set, "198.18.7.1") && strings.Contains(set, "198.18.6.2")
	})

	// 4. So is a broken scenario, and the new scenario keeps running.
	must(t, os.WriteFile(h.cfgPath, []byte(cfgText), 0o644))
	broken := filepath.Join(hub, "scenarios", "moat", "broken.yaml")
	must(t, os.WriteFile(broken, []byte("type: leaky\nname: test/broken\ndescription: broken\nfilter: \"evt.Meta.log_type ==\"\ngroupby: evt.Meta.source_ip\ncapacity: 1\nleakspeed: 1s\n"), 0o644))
	d.hup(t, 4)
	if out := d.stderr.String(); strings.Count(out, "configuration reload refused") != 2 || !strings.Contains(out, broken+":") {
		t.Fatalf("the broken scenario was not refused by name:\n%s", out)
	}
	appendTo(t, second, "Failed password for reloadprobe from 198.18.6.3 port 2227 ssh2")
	waitFor(t, 10*time.Second, "a ban by the scenario loaded before the refused reloads", func() bool {
		return strings.Contains(nftSet(t, ns, "ban4"), "198.18.6.3")
	})
	if ok, bad := metricValue(t, ns, `moat_config_reloads_total{result="success"}`), metricValue(t, ns, `moat_config_reloads_total{result="failure"}`); ok != 2 || bad != 2 {
		t.Errorf("moat_config_reloads_total: success %v failure %v, want 2 and 2", ok, bad)
	}
	// What users read carries wall time only, never Go's monotonic clock.
	for _, list := range []string{"alerts", "decisions"} {
		out := moatIn(t, ns, list, "list", "-o", "json", "--config", h.cfgPath)
		if !strings.Contains(out, "198.18.7.1") || strings.Contains(out, "m=+") {
			t.Errorf("moat %s list shows no ban of 198.18.7.1 or a monotonic clock reading:\n%s", list, out)
		}
	}
	set := nftSet(t, ns, "ban4")
	for _, ip := range []string{"198.18.5.1", "198.18.6.1"} {
		if !strings.Contains(set, ip) {
			t.Errorf("ban of %s lost across reloads", ip)
		}
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
}
