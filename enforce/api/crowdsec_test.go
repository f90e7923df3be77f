package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

// The real agent: Debian's crowdsec 1.4.6 registers with cscli, logs in,
// reads an SSH brute force from a log file and pushes the alert to moat's
// machine endpoints, which turn it into a moat decision a bouncer sees.
// crowdsec phones home when it can, so everything of it runs inside a
// namespace of the test's holding only loopback.
const (
	crowdsecBin = "/usr/bin/crowdsec"
	cscliBin    = "/usr/bin/cscli"
	csHub       = "/usr/share/crowdsec/hub"
	csPatterns  = "/etc/crowdsec/patterns"
)

func TestRealCrowdsecAgent(t *testing.T) {
	testutil.RequireRoot(t)
	for _, b := range []string{crowdsecBin, cscliBin, filepath.Join(csHub, ".index.json")} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("Debian's crowdsec is not installed (%v): apt-get install --no-install-recommends crowdsec", err)
		}
	}
	ns := testutil.NewNetNS(t)
	f := newFixture(t)
	if err := f.srv.EnableMachines(MachineConfig{Store: f.st}); err != nil {
		t.Fatal(err)
	}
	lapiURL := serveMachinesIn(t, ns, f)
	dir := t.TempDir()
	cfg := writeCrowdsecConfig(t, dir, lapiURL)
	const machine, attacker = "agent-1", "192.0.2.77"
	registerAgent(t, ns, f, cfg, lapiURL, machine)

	// The firewall bouncer pulls from the same listener, beside the agent.
	bouncer, bouncerErr := exec.LookPath("crowdsec-firewall-bouncer")
	if bouncerErr == nil {
		startFirewallBouncer(t, ns, bouncer, lapiURL+"/", f.bouncerKey(t, "cs-firewall-bouncer"))
	}
	startAgent(t, ns, cfg, filepath.Join(dir, "crowdsec.out"))
	rec := waitForAgentAlert(t, f, filepath.Join(dir, "auth.log"), attacker)
	if rec.Alert.Labels["machine"] != machine || len(rec.Decisions) == 0 {
		t.Fatalf("stored alert %+v: want one of %s with a decision", rec, machine)
	}
	recs, err := f.st.ListDecisions(context.Background(), store.Filter{Value: attacker})
	if err != nil || len(recs) == 0 {
		t.Fatalf("active decisions on %s: %v, %v", attacker, recs, err)
	}
	var d store.Record
	for _, r := range recs {
		if r.AlertID == rec.ID {
			d = r
		}
	}
	if d.Type != "ban" || d.Origin != "machine" || d.Scenario != "crowdsecurity/ssh-bf" {
		t.Fatalf("decisions %+v: want a ban of origin machine from alert %d", recs, rec.ID)
	}
	f.enf.mu.Lock()
	_, held := f.enf.held[d.ID]
	f.enf.mu.Unlock()
	if !held {
		t.Fatalf("decision %d is not in the kernel enforcer", d.ID)
	}
	// A bouncer sees it through the bouncer endpoints, as crowdsec's.
	code, body := get(t, f.lapi.URL, "/v1/decisions?ip="+url.QueryEscape(attacker), f.bouncerKey(t, "fw"))
	var got []lapiDecision
	if err := json.Unmarshal(body, &got); code != 200 || err != nil || len(got) == 0 || got[0].Origin != "crowdsec" || got[0].Value != attacker {
		t.Fatalf("bouncer lookup of %s: %d %s", attacker, code, body)
	}
	if bouncerErr == nil {
		waitForRuleset(t, ns, "the agent's ban in the firewall bouncer's set", func(rs string) bool {
			return strings.Contains(rs, "moattest-bl4") && strings.Contains(rs, attacker)
		})
	} else {
		t.Logf("crowdsec-firewall-bouncer not installed: its part skipped (%v)", bouncerErr)
	}
	// cscli reads the alert back through GET /v1/alerts.
	out, err := ns.Command(cscliBin, "-c", cfg, "alerts", "list", "-o", "json", "--ip", attacker).CombinedOutput()
	if err != nil || !strings.Contains(string(out), attacker) || !strings.Contains(string(out), "crowdsecurity/ssh-bf") {
		t.Errorf("cscli alerts list --ip %s: %v: %s", attacker, err, out)
	}
	// Its tables, which dereference what the JSON may leave out.
	for _, args := range [][]string{{"alerts", "list"}, {"decisions", "list"}} {
		out, err := ns.Command(append([]string{cscliBin, "-c", cfg, "-o", "human"}, args...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), attacker) {
			t.Errorf("cscli %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// And deletes the ban through DELETE /v1/decisions.
	out, err = ns.Command(cscliBin, "-c", cfg, "decisions", "delete", "--ip", attacker).CombinedOutput()
	t.Logf("cscli decisions delete: %s", out)
	if recs, _ := f.st.ListDecisions(context.Background(), store.Filter{Value: attacker}); err != nil || len(recs) != 0 {
		t.Errorf("after cscli decisions delete: %v, %d active", err, len(recs))
	}
}

// serveMachinesIn serves f's machine and bouncer endpoints on ns's
// loopback until the test ends and returns the base URL. The listener is
// opened inside the namespace; the server goroutine serves it from here.
func serveMachinesIn(t *testing.T, ns *testutil.NetNS, f *fixture) string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, f.srv.MachineHandler()) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return "http://" + ln.Addr().String()
}

// registerAgent registers the agent as an operator would, with cscli
// lapi register, checks an unapproved agent is refused with a clear
// message, then approves it in moat's store.
func registerAgent(t *testing.T, ns *testutil.NetNS, f *fixture, cfg, lapiURL, machine string) {
	t.Helper()
	out, err := ns.Command(cscliBin, "-c", cfg, "lapi", "register", "--url", lapiURL, "--machine", machine).CombinedOutput()
	if err != nil {
		t.Fatalf("cscli lapi register: %v: %s", err, out)
	}
	m, err := f.st.GetMachine(context.Background(), machine)
	if err != nil || m.Approved {
		t.Fatalf("after register: machine %+v, %v: want it stored, unapproved", m, err)
	}
	out, err = ns.Command(cscliBin, "-c", cfg, "lapi", "status").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not approved") {
		t.Fatalf("cscli lapi status, unapproved: %v: %s", err, out)
	}
	if err := f.st.ApproveMachine(context.Background(), machine); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Command(cscliBin, "-c", cfg, "lapi", "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "successfully interact") {
		t.Fatalf("cscli lapi status, approved: %v: %s", err, out)
	}
}

// startAgent runs crowdsec -no-api (the agent alone) in ns until the test
// ends, killing its process group even on failure.
func startAgent(t *testing.T, ns *testutil.NetNS, cfg, outPath string) {
	t.Helper()
	agent := ns.Command(crowdsecBin, "-c", cfg, "-no-api")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	agent.Stdout, agent.Stderr = out, out
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-agent.Process.Pid, syscall.SIGKILL)
		agent.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(outPath)
			t.Logf("crowdsec output:\n%s", b)
		}
	})
}

// waitForAgentAlert writes SSH brute-force bursts from attacker into the
// agent's log until its crowdsecurity/ssh-bf alert is stored (the agent
// tails from the end of the file, so bursts before it started are lost).
func waitForAgentAlert(t *testing.T, f *fixture, logPath, attacker string) store.AlertRecord {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		appendBruteForce(t, logPath, attacker, n)
		time.Sleep(time.Second)
		recs, err := f.st.ListAlerts(context.Background(), store.AlertFilter{Value: attacker})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Alert.Scenario == "crowdsecurity/ssh-bf" {
				return r
			}
		}
	}
	t.Fatalf("no crowdsecurity/ssh-bf alert from the agent for %s within 90s", attacker)
	return store.AlertRecord{}
}

// appendBruteForce appends seven failed SSH logins from ip, timestamped
// now, in syslog form.
func appendBruteForce(t *testing.T, path, ip string, round int) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ts := time.Now().Format(time.Stamp)
	for i := range 7 {
		fmt.Fprintf(fh, "%s testhost sshd[%d]: Failed password for invalid user user%d from %s port %d ssh2\n", ts, 4000+round, i, ip, 40000+round*10+i)
	}
}

// writeCrowdsecConfig writes an agent-only configuration under dir: the
// sshd parsers and ssh-bf scenario linked from Debian's hub copy, an
// acquisition of dir/auth.log, no API server, no console, no metrics.
func writeCrowdsecConfig(t *testing.T, dir, lapiURL string) string {
	t.Helper()
	etc := filepath.Join(dir, "etc")
	links := map[string]string{
		"parsers/s00-raw/syslog-logs.yaml":         "parsers/s00-raw/crowdsecurity/syslog-logs.yaml",
		"parsers/s01-parse/sshd-logs.yaml":         "parsers/s01-parse/crowdsecurity/sshd-logs.yaml",
		"parsers/s02-enrich/dateparse-enrich.yaml": "parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml",
		"scenarios/ssh-bf.yaml":                    "scenarios/crowdsecurity/ssh-bf.yaml",
	}
	for dst, src := range links {
		p := filepath.Join(etc, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(csHub, src), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(csPatterns, filepath.Join(etc, "patterns")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"data", "acquis.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/simulation.yaml": "simulation: false\n",
		"etc/acquis.yaml":     fmt.Sprintf("filenames:\n  - %s\nlabels:\n  type: syslog\n", filepath.Join(dir, "auth.log")),
		"auth.log":            "",
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
crowdsec_service:
  acquisition_path: %[1]s/etc/acquis.yaml
  acquisition_dir: %[1]s/acquis.d
  parser_routines: 1
cscli:
  output: human
  color: "no"
api:
  client:
    insecure_skip_verify: false
    credentials_path: %[1]s/local_api_credentials.yaml
prometheus:
  enabled: false
`, dir, csHub),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// cscli lapi register reads the client credentials before it
	// replaces them: they must name the URL already.
	if err := os.WriteFile(filepath.Join(dir, "local_api_credentials.yaml"), []byte("url: "+lapiURL+"\nlogin: unregistered\npassword: unregistered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "config.yaml")
}
