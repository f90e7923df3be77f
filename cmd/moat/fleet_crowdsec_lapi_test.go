package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// Debian's crowdsec 1.4.6 stands in for a fleet server: a moat agent must
// push its alerts to a real LAPI and hold the LAPI's decisions through its
// bouncer stream. crowdsec phones home when it can, so it runs only inside
// a namespace of the test's holding nothing but loopback.
const (
	lapiCrowdsec = "/usr/bin/crowdsec"
	lapiCscli    = "/usr/bin/cscli"
	lapiHub      = "/usr/share/crowdsec/hub"
	lapiPatterns = "/etc/crowdsec/patterns"
	lapiListen   = "127.0.0.1:8080"
)

// csLAPI is a crowdsec LAPI running in a namespace.
type csLAPI struct {
	ns  *testutil.NetNS
	dir string
	cfg string
}

// cscli runs cscli against the LAPI's configuration and returns its
// output; it fails the test on error.
func (l *csLAPI) cscli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.ns.Command(append([]string{lapiCscli, "-c", l.cfg}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("cscli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startCrowdsecLAPI writes a LAPI-only configuration under a temp dir (its
// own SQLite database, no online client, no console sharing, no metrics,
// the hub read where Debian installs it) and runs `crowdsec -no-cs
// -no-capi` in ns until the test ends, killing it even on failure.
func startCrowdsecLAPI(t *testing.T, ns *testutil.NetNS) *csLAPI {
	t.Helper()
	for _, b := range []string{lapiCrowdsec, lapiCscli, filepath.Join(lapiHub, ".index.json"), lapiPatterns} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("Debian's crowdsec is not installed (%v): apt-get install --no-install-recommends crowdsec", err)
		}
	}
	l := &csLAPI{ns: ns, dir: t.TempDir()}
	l.cfg = filepath.Join(l.dir, "config.yaml")
	for _, d := range []string{"etc", "data"} {
		must(t, os.MkdirAll(filepath.Join(l.dir, d), 0o755))
	}
	must(t, os.Symlink(lapiPatterns, filepath.Join(l.dir, "etc", "patterns")))
	files := map[string]string{
		"etc/simulation.yaml": "simulation: false\n",
		"etc/console.yaml":    "share_manual_decisions: false\nshare_custom: false\nshare_tainted: false\n",
		// The stock profile: an alert without decisions of its own (none
		// of moat's) gets a 4h ban.
		"etc/profiles.yaml": "name: default_ip_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n  - type: ban\n    duration: 4h\non_success: break\n",
		"config.yaml": fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: %[1]s/etc/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/etc/simulation.yaml
  hub_dir: %[2]s/
  index_path: %[2]s/.index.json
cscli:
  output: human
  color: "no"
db_config:
  log_level: info
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
api:
  client:
    insecure_skip_verify: false
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: %[3]s
    profiles_path: %[1]s/etc/profiles.yaml
    console_path: %[1]s/etc/console.yaml
    trusted_ips: [127.0.0.1, "::1"]
prometheus:
  enabled: false
`, l.dir, lapiHub, lapiListen),
	}
	for name, body := range files {
		must(t, os.WriteFile(filepath.Join(l.dir, name), []byte(body), 0o644))
	}
	outPath := filepath.Join(l.dir, "crowdsec.out")
	out, err := os.Create(outPath)
	must(t, err)
	cmd := ns.Command(lapiCrowdsec, "-c", l.cfg, "-no-cs", "-no-capi")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(outPath)
			t.Logf("crowdsec output:\n%s", b)
		}
	})
	// Any answer will do. Probed with curl, not ns.Do: a thread ns.Do
	// locks and discards may be the one that forked crowdsec, whose
	// Pdeathsig would then kill it.
	waitFor(t, 60*time.Second, "crowdsec's LAPI to listen", func() bool {
		return ns.Command("curl", "-s", "-o", "/dev/null", "--max-time", "2", "http://"+lapiListen+"/").Run() == nil
	})
	// cscli's own machine, for the commands that go through the API
	// (alerts list, decisions add and delete).
	l.cscli(t, "machines", "add", "cscli-admin", "--auto", "-f", filepath.Join(l.dir, "local_api_credentials.yaml"))
	return l
}

// csAlert is what `cscli alerts list -o json` shows of an alert.
type csAlert struct {
	MachineID string `json:"machine_id"`
	Scenario  string `json:"scenario"`
	Source    struct {
		Scope string `json:"scope"`
		Value string `json:"value"`
		IP    string `json:"ip"`
	} `json:"source"`
	Decisions []struct {
		Origin string `json:"origin"`
		Value  string `json:"value"`
		Type   string `json:"type"`
	} `json:"decisions"`
}

// TestFleetAgentAgainstCrowdsecLAPI runs a moat agent whose fleet server
// is Debian's crowdsec LAPI: its stream path answers 404, so moat pushes
// its alerts and polls the bouncer stream. It checks that moat's alert
// reaches crowdsec with the attacker and the ban, that a ban made with
// cscli reaches moat's kernel set (an address, a range, IPv6), that
// deleting it there removes it, and that a restart catches up.
func TestFleetAgentAgainstCrowdsecLAPI(t *testing.T) {
	testutil.RequireRoot(t)
	const (
		password = "moat-agent-password-0123456789"
		attacker = "203.0.113.50"
		manual   = "198.51.100.77"
	)
	ns := testutil.NewNetNS(t)
	lapi := startCrowdsecLAPI(t, ns)
	// -f -: printed, not written over cscli's own credentials file.
	lapi.cscli(t, "machines", "add", "moat-agent", "--password", password, "-f", "-")
	const bouncerKey = "moatagentbouncerkey0123456789abc"
	lapi.cscli(t, "bouncers", "add", "moat-agent", "-k", bouncerKey)

	h := newE2EHost(t, ns, nil)
	keyFile := filepath.Join(h.dir, "bouncer.key")
	must(t, os.WriteFile(keyFile, []byte(bouncerKey+"\n"), 0o600))
	// poll_interval 1s is the shortest the configuration takes.
	appendConfig(t, h.cfgPath, fmt.Sprintf("fleet:\n  server: http://%s\n  machine_id: moat-agent\n  password: %q\n  bouncer_key_file: %s\n  poll_interval: 1s\n",
		lapiListen, password, keyFile))
	d := startDaemon(t, h)

	// The agent logs in, finds no fleet stream (404) and falls back to
	// the bouncer stream: its first pull is in crowdsec's access log.
	// Waited for so the push below is timed without the login's bcrypt.
	waitFor(t, 30*time.Second, "moat's first pull of the bouncer stream", func() bool {
		b, _ := os.ReadFile(filepath.Join(lapi.dir, "crowdsec.out"))
		return strings.Contains(string(b), "GET /v1/decisions/stream?scopes=ip,range&startup=true HTTP/1.1 200")
	})

	// (a) moat's alert reaches crowdsec, pushed as machine moat-agent.
	written := time.Now()
	h.appendLines(t, repeatLine("Failed password for root from "+attacker+" port 4000 ssh2", 6)...)
	// The LAPI's 201 to the push, as moat counts it: curl costs a few ms a
	// scrape, cscli (a login, then the query) a hundred.
	waitFor(t, 30*time.Second, "moat's push taken by crowdsec", func() bool {
		return strings.Contains(scrape(t, ns, "http://127.0.0.1:9641/metrics"), "\nmoat_fleet_pushed_alerts_total 1\n")
	})
	t.Logf("moat's log line to crowdsec's 201 to the push: %.0f ms", msOf(time.Since(written)))
	if !strings.Contains(nftSet(t, ns, "ban4"), attacker) {
		t.Fatal("the attacker is not in moat's ban4")
	}
	var got []csAlert
	waitFor(t, 30*time.Second, "moat's alert in cscli alerts list", func() bool {
		got = nil
		out, err := ns.Command(lapiCscli, "-c", lapi.cfg, "alerts", "list", "-o", "json", "--ip", attacker).Output()
		return err == nil && json.Unmarshal(out, &got) == nil && len(got) > 0
	})
	t.Logf("moat's log line to the alert in cscli alerts list: %.0f ms (cscli polled back to back)", msOf(time.Since(written)))
	a := got[0]
	if a.MachineID != "moat-agent" || a.Source.Value != attacker || a.Source.Scope != "Ip" || len(a.Decisions) == 0 ||
		a.Decisions[0].Value != attacker || a.Decisions[0].Type != "ban" {
		t.Fatalf("crowdsec holds %+v: want moat-agent's alert on %s with its ban", got, attacker)
	}
	t.Logf("crowdsec's copy: machine %s, scenario %s, decision origin %s", a.MachineID, a.Scenario, a.Decisions[0].Origin)

	// (b) and (c), a few rounds for the latency's spread: a ban made with
	// cscli reaches moat's kernel, and deleting it there removes it. The
	// bouncer stream is polled, so each waits up to poll_interval.
	const rounds = 5
	var addLat, delLat []time.Duration
	for r := range rounds {
		held := func() {}
		if r == 0 {
			held = func() { checkLAPIOrigins(t, ns, h.cfgPath, manual, attacker) }
		}
		add, del := banRoundTrip(t, lapi, "--ip", manual, "ban4", held)
		addLat, delLat = append(addLat, add), append(delLat, del)
	}
	t.Logf("cscli decisions add to moat's ban4 over %d rounds (poll_interval 1s): %s", rounds, spread(addLat))
	t.Logf("cscli decisions delete to gone from moat's ban4 over %d rounds: %s", rounds, spread(delLat))
	// The LAPI's other shapes: a range (scope Range) and an IPv6 address.
	banRoundTrip(t, lapi, "--range", "198.51.100.128/25", "ban4_range", func() {})
	banRoundTrip(t, lapi, "--ip", "2001:db8:77::77", "ban6", func() {})
	if !strings.Contains(nftSet(t, ns, "ban4"), attacker) {
		t.Fatal("moat's own ban went with crowdsec's")
	}
	// A restart's startup pull drops the ban crowdsec deleted while moat
	// was down (the kernel kept it) and takes the one it added.
	const later = "198.51.100.78"
	lapi.cscli(t, "decisions", "add", "--ip", manual, "--duration", "1h")
	waitFor(t, 30*time.Second, "crowdsec's ban in moat's ban4", func() bool { return strings.Contains(nftSet(t, ns, "ban4"), manual) })
	logs := d.stderr.String()
	must(t, d.stop(t, syscall.SIGTERM))
	lapi.cscli(t, "decisions", "delete", "--ip", manual)
	lapi.cscli(t, "decisions", "add", "--ip", later, "--duration", "1h")
	d = startDaemon(t, h)
	waitFor(t, 30*time.Second, "the restarted agent's startup pull", func() bool {
		set := nftSet(t, ns, "ban4")
		return !strings.Contains(set, manual) && strings.Contains(set, later) && strings.Contains(set, attacker) &&
			strings.Contains(scrape(t, ns, "http://127.0.0.1:9641/metrics"), "\nmoat_fleet_decisions_deleted_total 1\n")
	})
	// Nothing failed on the way: a refused push or poll is only logged.
	for _, l := range strings.Split(logs+d.stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "component=fleet") {
			t.Errorf("moat's fleet agent: %s", l)
		}
	}
}

// banRoundTrip bans value with cscli decisions add (flag --ip or
// --range), waits for it in moat's set, calls held, deletes it with cscli
// decisions delete and waits for it to leave the set. It returns the two
// latencies, from cscli's return to the set's change.
func banRoundTrip(t *testing.T, lapi *csLAPI, flag, value, set string, held func()) (add, del time.Duration) {
	t.Helper()
	inSet := func() bool { return strings.Contains(nftSet(t, lapi.ns, set), value) }
	lapi.cscli(t, "decisions", "add", flag, value, "--duration", "1h")
	start := time.Now()
	waitFor(t, 30*time.Second, "crowdsec's ban on "+value+" in moat's "+set, inSet)
	add = time.Since(start)
	held()
	lapi.cscli(t, "decisions", "delete", flag, value)
	start = time.Now()
	waitFor(t, 30*time.Second, "crowdsec's deleted ban on "+value+" gone from moat's "+set, func() bool { return !inSet() })
	return add, time.Since(start)
}

// checkLAPIOrigins checks what moat holds: the LAPI's ban once, as a
// fleet decision, and moat's own ban once, local, though the bouncer
// stream hands it back.
func checkLAPIOrigins(t *testing.T, ns *testutil.NetNS, cfgPath, fleetIP, localIP string) {
	t.Helper()
	var ds []struct {
		Value  string `json:"value"`
		Origin string `json:"origin"`
	}
	must(t, json.Unmarshal([]byte(moatIn(t, ns, "decisions", "list", "--all", "--config", cfgPath, "-o", "json")), &ds))
	byValue := map[string][]string{}
	for _, x := range ds {
		byValue[x.Value] = append(byValue[x.Value], x.Origin)
	}
	if fmt.Sprint(byValue[fleetIP]) != "[fleet]" || fmt.Sprint(byValue[localIP]) != "[local]" {
		t.Fatalf("moat holds %v: want %s once from the fleet and %s once, local", byValue, fleetIP, localIP)
	}
}

// spread is the fastest, median and slowest of ls.
func spread(ls []time.Duration) string {
	s := slices.Clone(ls)
	slices.Sort(s)
	return fmt.Sprintf("min %.0f ms, median %.0f ms, max %.0f ms", msOf(s[0]), msOf(s[len(s)/2]), msOf(s[len(s)-1]))
}
