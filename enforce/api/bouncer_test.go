package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

// TestCrowdSecFirewallBouncer runs Debian's crowdsec-firewall-bouncer
// against moat's API inside a throwaway network namespace: a decision added
// through the service must reach the bouncer's nftables set, and leave it
// when deleted.
func TestCrowdSecFirewallBouncer(t *testing.T) {
	testutil.RequireRoot(t)
	bin, err := exec.LookPath("crowdsec-firewall-bouncer")
	if err != nil {
		t.Fatal("crowdsec-firewall-bouncer is not installed: apt-get install --no-install-recommends crowdsec-firewall-bouncer")
	}
	ns := testutil.NewNetNS(t)
	f := newFixture(t)
	key := f.bouncerKey(t, "cs-firewall-bouncer")
	url := serveBouncersIn(t, ns, f)

	// A ban that exists before the bouncer starts comes with startup=true.
	early := f.add(t, "198.18.10.1", time.Hour, "crowdsecurity/ssh-bf")

	startFirewallBouncer(t, ns, bin, url, key)
	waitForRuleset(t, ns, "startup decision in the bouncer's set", func(rs string) bool {
		return strings.Contains(rs, "moattest-bl4") && strings.Contains(rs, "198.18.10.1")
	})

	d := f.add(t, "198.18.10.2", time.Hour, "crowdsecurity/ssh-bf")
	d6 := f.add(t, "2001:db8::77", time.Hour, "crowdsecurity/ssh-bf")
	waitForRuleset(t, ns, "new decisions in the sets", func(rs string) bool {
		return strings.Contains(rs, "198.18.10.2") && strings.Contains(rs, "2001:db8::77")
	})
	if _, err := f.svc.Delete(context.Background(), store.Filter{ID: d.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Delete(context.Background(), store.Filter{ID: d6.ID}); err != nil {
		t.Fatal(err)
	}
	waitForRuleset(t, ns, "deleted decisions leave the sets", func(rs string) bool {
		return !strings.Contains(rs, "198.18.10.2") && !strings.Contains(rs, "2001:db8::77") && strings.Contains(rs, "198.18.10.1")
	})
	if _, err := f.svc.Delete(context.Background(), store.Filter{ID: early.ID}); err != nil {
		t.Fatal(err)
	}
	waitForRuleset(t, ns, "the startup decision leaves too", func(rs string) bool { return !strings.Contains(rs, "198.18.10.1") })

	// The bouncer's pulls were recorded.
	bs, err := f.st.ListBouncers(context.Background())
	if err != nil || len(bs) != 1 || bs[0].LastSeen.IsZero() || !strings.Contains(bs[0].UserAgent, "firewall-bouncer") {
		t.Errorf("bouncer bookkeeping: %+v, %v", bs, err)
	}

	// The same protocol seen by curl, as a shell script would.
	k2 := f.bouncerKey(t, "curl")
	f.add(t, "198.18.10.3", time.Hour, "manual")
	curl := func(args ...string) string {
		o, err := ns.Command(append([]string{"curl", "-sS", "--max-time", "5"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, o)
		}
		return string(o)
	}
	var sr streamResp
	body := curl("-H", "X-Api-Key: "+k2, url+"v1/decisions/stream?startup=true")
	if err := json.Unmarshal([]byte(body), &sr); err != nil || len(sr.New) != 1 || sr.New[0].Value != "198.18.10.3" {
		t.Errorf("curl startup: %s", body)
	}
	body = curl("-H", "X-Api-Key: "+k2, url+"v1/decisions/stream")
	if strings.TrimSpace(body) != `{"new":[],"deleted":[]}` {
		t.Errorf("curl delta: %s", body)
	}
	if code := curl("-o", "/dev/null", "-w", "%{http_code}", url+"v1/decisions/stream"); code != "401" {
		t.Errorf("curl without key: %s", code)
	}
}

// serveBouncersIn serves f's bouncer API inside ns until the test ends and
// returns its base URL. The listener is created inside the namespace, so
// it lives there whichever thread serves it.
func serveBouncersIn(t *testing.T, ns *testutil.NetNS, f *fixture) string {
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
	go func() { served <- f.srv.Serve(ctx, ln, f.srv.BouncerHandler()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String() + "/"
}

// firewallBouncerConfig is the bouncer's configuration, with its own
// moattest tables so it cannot touch moat's: %[1]s is its pid and log
// directory, %[2]s the API's URL, %[3]s its key.
const firewallBouncerConfig = `mode: nftables
pid_dir: %[1]s
update_frequency: 1s
daemonize: false
log_mode: file
log_dir: %[1]s
log_level: debug
api_url: %[2]s
api_key: %[3]s
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: moattest-bl4
blacklists_ipv6: moattest-bl6
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: moattest
    chain: moattest-chain
  ipv6:
    enabled: true
    set-only: false
    table: moattest6
    chain: moattest6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
`

// startFirewallBouncer runs the bouncer bin in ns against the API at url
// until the test ends; its output and log are shown if the test failed.
func startFirewallBouncer(t *testing.T, ns *testutil.NetNS, bin, url, key string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "bouncer.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(firewallBouncerConfig, dir, url, key)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(bin, "-c", cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "crowdsec-firewall-bouncer.log"))
			t.Logf("bouncer output:\n%s\n%s", out.String(), logs)
		}
	})
}

// waitForRuleset waits up to 15s for ns's nftables ruleset to satisfy
// cond: the bouncer applies decisions on its own schedule.
func waitForRuleset(t *testing.T, ns *testutil.NetNS, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		o, err := ns.Command("nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset: %v: %s", err, o)
		}
		rs := string(o)
		if cond(rs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s; ruleset:\n%s", what, rs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
