package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
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
			t.Skipf("SKIPPED: Debian's crowdsec is not installed (%v)", err)
		}
	}
	ns := testutil.NewNetNS(t)
	f := newFixture(t)
	if err := f.srv.EnableMachines(MachineConfig{Store: f.st}); err != nil {
		t.Fatal(err)
	}
	// The listener is opened inside the namespace, on its loopback; the
	// server goroutine serves it from the host side.
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
	lapiURL := "http://" + ln.Addr().String()

	dir := t.TempDir()
	cfg := writeCrowdsecConfig(t, dir, lapiURL)
	const machine = "agent-1"

	// Register as an operator would, with cscli, then approve on moat's side.
	out, err := ns.Command(cscliBin, "-c", cfg, "lapi", "register", "--url", lapiURL, "--machine", machine).CombinedOutput()
	t.Logf("cscli lapi register: %s", out)
	if err != nil {
		t.Fatalf("cscli lapi register: %v", err)
	}
	m, err := f.st.GetMachine(context.Background(), machine)
	if err != nil || m.Approved {
		t.Fatalf("after register: machine %+v, %v: want it stored, unapproved", m, err)
	}
	// Unapproved, the agent gets a clear refusal.
	out, _ = ns.Command(cscliBin, "-c", cfg, "lapi", "status").CombinedOutput()
	t.Logf("cscli lapi status, unapproved: %s", out)
	if err := f.st.ApproveMachine(context.Background(), machine); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Command(cscliBin, "-c", cfg, "lapi", "status").CombinedOutput()
	t.Logf("cscli lapi status, approved: %s", out)
	if err != nil {
		t.Fatalf("cscli lapi status after approval: %v", err)
	}

	logPath := filepath.Join(dir, "auth.log")
	agent := ns.Command(crowdsecBin, "-c", cfg, "-no-api")
	agentLog, err := os.Create(filepath.Join(dir, "crowdsec.out"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Stdout, agent.Stderr = agentLog, agentLog
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-agent.Process.Pid, syscall.SIGKILL)
		agent.Wait()
		agentLog.Close()
		if t.Failed() {
			b, _ := os.ReadFile(agentLog.Name())
			t.Logf("crowdsec output:\n%s", b)
		}
	})

	const attacker = "192.0.2.77"
	deadline := time.Now().Add(90 * time.Second)
	var rec store.AlertRecord
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("no alert from the agent for %s within 90s", attacker)
		}
		// The agent tails from the end of the file: keep writing bursts
		// until one is read after it started.
		appendBruteForce(t, logPath, attacker, n)
		time.Sleep(time.Second)
		recs, err := f.st.ListAlerts(context.Background(), store.AlertFilter{Value: attacker})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs {
			if r.Alert.Scenario == "crowdsecurity/ssh-bf" {
				rec, found = r, true
			}
		}
		if found {
			break
		}
	}
	all, _ := f.st.ListAlerts(context.Background(), store.AlertFilter{})
	for _, a := range all {
		t.Logf("stored alert %d: %s %s %s events=%d decisions=%v", a.ID, a.Alert.Scenario, a.Alert.Scope, a.Alert.Value, a.Alert.EventsCount, a.Decisions)
	}
	hist, _ := f.st.ListDecisions(context.Background(), store.Filter{History: true})
	for _, d := range hist {
		t.Logf("decision %d: %s %s origin=%s alert=%d until=%s", d.ID, d.Type, d.Value, d.Origin, d.AlertID, d.Until.Sub(d.Created).Round(time.Minute))
	}
	if !strings.HasPrefix(rec.Alert.Scenario, "crowdsecurity/ssh-bf") || rec.Alert.Labels["machine"] != machine {
		t.Fatalf("stored alert %+v: want crowdsecurity/ssh-bf from %s", rec.Alert, machine)
	}
	if len(rec.Decisions) == 0 {
		t.Fatalf("alert %d has no decision", rec.ID)
	}
	recs, err := f.st.ListDecisions(context.Background(), store.Filter{Value: attacker})
	if err != nil || len(recs) == 0 {
		t.Fatalf("active decisions on %s: %v, %v", attacker, recs, err)
	}
	d := recs[0]
	if d.Type != "ban" || d.Origin != "machine" || d.AlertID != rec.ID {
		t.Fatalf("decision %+v: want a ban of origin machine from alert %d", d, rec.ID)
	}
	if _, held := f.enf.held[d.ID]; !held {
		t.Fatalf("decision %d is not in the kernel enforcer", d.ID)
	}
	// A bouncer sees it through the bouncer endpoints, as crowdsec.
	key := f.bouncerKey(t, "fw")
	req, _ := http.NewRequest(http.MethodGet, f.lapi.URL+"/v1/decisions?ip="+url.QueryEscape(attacker), nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []lapiDecision
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got) == 0 {
		t.Fatalf("bouncer lookup of %s: %v, %v", attacker, got, err)
	}
	if got[0].Origin != "crowdsec" || got[0].Value != attacker {
		t.Fatalf("bouncer sees %+v: want origin crowdsec on %s", got[0], attacker)
	}
	// cscli reads the alert back through GET /v1/alerts.
	out, err = ns.Command(cscliBin, "-c", cfg, "alerts", "list", "-o", "json", "--ip", attacker).CombinedOutput()
	if err != nil {
		t.Logf("cscli alerts list: %v: %s", err, out)
	} else if !strings.Contains(string(out), attacker) {
		t.Errorf("cscli alerts list does not show %s: %s", attacker, out)
	}
	m, _ = f.st.GetMachine(context.Background(), machine)
	t.Logf("machine after the run: %+v", m)
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
