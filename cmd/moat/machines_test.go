package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/testutil"
)

// TestServerRole runs the daemon with the server role on its own listener
// in a namespace: an admin adds a machine with moat machines add, the
// machine logs in and pushes an alert as a CrowdSec agent does, and the
// ban reaches moat's nftables set; a machine that registered itself waits
// for moat machines approve.
func TestServerRole(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	h := newE2EHost(t, ns, nil)
	f, err := os.OpenFile(h.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("server:\n  enabled: true\n  listen: 127.0.0.1:8089\n  jwt_lifetime: 10m\n")
	must(t, err)
	must(t, f.Close())
	d := startDaemon(t, h)
	const base = "http://127.0.0.1:8089"

	var added struct {
		api.Machine
		Password string `json:"password"`
	}
	out := moatIn(t, ns, "machines", "add", "agent-1", "--config", h.cfgPath, "-o", "json")
	if err := json.Unmarshal([]byte(out), &added); err != nil || !added.Approved || len(added.Password) < 32 {
		t.Fatalf("moat machines add: %v: %s", err, out)
	}
	curl := func(args ...string) (string, string) {
		t.Helper()
		o, err := ns.Command(append([]string{"curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, o)
		}
		s := string(o)
		i := strings.LastIndex(s, "\n")
		return strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
	}
	body, code := curl("-d", `{"machine_id":"agent-1","password":"`+added.Password+`","scenarios":["crowdsecurity/ssh-bf"]}`, base+"/v1/watchers/login")
	var login api.LoginResponse
	if err := json.Unmarshal([]byte(body), &login); code != "200" || err != nil || login.Token == "" {
		t.Fatalf("login: %s %s", code, body)
	}
	alert := `[{"scenario":"crowdsecurity/ssh-bf","scenario_hash":"","scenario_version":"0.1","message":"ssh brute force","events_count":6,"capacity":5,"leakspeed":"10s","simulated":false,"remediation":true,"start_at":"2026-01-01T00:00:00Z","stop_at":"2026-01-01T00:00:02Z","source":{"scope":"Ip","value":"192.0.2.55"},"events":[]}]`
	body, code = curl("-H", "Authorization: Bearer "+login.Token, "-d", alert, base+"/v1/alerts")
	if code != "201" || !strings.HasPrefix(body, `["`) {
		t.Fatalf("push: %s %s", code, body)
	}
	waitFor(t, 10*time.Second, "the pushed ban in ban4", func() bool { return strings.Contains(nftSet(t, ns, "ban4"), "192.0.2.55") })
	if log := d.stderr.String(); !strings.Contains(log, `msg="machine alert" component=decisions machine=agent-1`) {
		t.Errorf("the daemon did not log the machine's alert:\n%s", log)
	}
	out = moatIn(t, ns, "decisions", "list", "--config", h.cfgPath, "-o", "json")
	if !strings.Contains(out, `"192.0.2.55"`) || !strings.Contains(out, `"origin": "machine"`) {
		t.Fatalf("moat decisions list: %s", out)
	}

	// Self-registered: refused at login until approved.
	_, code = curl("-d", `{"machine_id":"agent-2","password":"pw-agent-2"}`, base+"/v1/watchers")
	if code != "201" {
		t.Fatalf("register: %s", code)
	}
	loginBody := `{"machine_id":"agent-2","password":"pw-agent-2"}`
	if body, code = curl("-d", loginBody, base+"/v1/watchers/login"); code != "403" || !strings.Contains(body, "moat machines approve agent-2") {
		t.Fatalf("unapproved login: %s %s", code, body)
	}
	moatIn(t, ns, "machines", "approve", "agent-2", "--config", h.cfgPath)
	if body, code = curl("-d", loginBody, base+"/v1/watchers/login"); code != "200" {
		t.Fatalf("approved login: %s %s", code, body)
	}
	var ms []api.Machine
	out = moatIn(t, ns, "machines", "list", "--config", h.cfgPath, "-o", "json")
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 2 || ms[0].LastLogin.IsZero() || ms[1].IP != "127.0.0.1" {
		t.Fatalf("moat machines list: %v: %s", err, out)
	}
	moatIn(t, ns, "machines", "delete", "agent-1", "--config", h.cfgPath)
	if body, code = curl("-H", "Authorization: Bearer "+login.Token, base+"/v1/heartbeat"); code != "401" {
		t.Fatalf("heartbeat of a deleted machine: %s %s", code, body)
	}
}
