package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// TestDaemonNotifies runs moat (no kernel backend, so no root) on an
// sshd log with three channels: a webhook on loopback, an NDJSON file and
// a webhook that accepts and never answers. A brute force reaches the
// first two; the hanging one only fills its queue. After a restart, the
// restored ban and the same attack raised again send nothing; a new
// attacker does.
func TestDaemonNotifies(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP in -short mode: runs the daemon twice")
	}
	hook := newWebhookSink(t)
	received := hook.received
	hangLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { hangLn.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hangLn.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	h := newNotifyHost(t, hook.addr, hangLn.Addr().String())
	d := startPlainDaemon(t, h.cfgPath)
	attack := func(ip string) {
		var lines []string
		for i := range 8 {
			lines = append(lines, fmt.Sprintf("Failed password for root from %s port %d ssh2", ip, 40000+i))
		}
		h.appendLines(t, lines...)
	}
	attack("198.51.100.7")
	waitFor(t, 15*time.Second, "the webhook to hear of the ban", func() bool { return len(received()) > 0 })
	var msg struct {
		Alerts []struct {
			Scenario  string `json:"scenario"`
			Value     string `json:"value"`
			Decisions []struct {
				Type string `json:"type"`
			} `json:"decisions"`
		} `json:"alerts"`
	}
	must(t, json.Unmarshal([]byte(received()[0]), &msg))
	if len(msg.Alerts) != 1 || msg.Alerts[0].Value != "198.51.100.7" || !strings.Contains(msg.Alerts[0].Scenario, "ssh") || len(msg.Alerts[0].Decisions) == 0 {
		t.Fatalf("webhook body %s", received()[0])
	}
	waitFor(t, 10*time.Second, "the NDJSON line", func() bool {
		b, _ := os.ReadFile(h.siem)
		return strings.Contains(string(b), `"value":"198.51.100.7"`)
	})
	code, out, errOut := runMoat(t, "", "notifications", "list", "-c", h.cfgPath, "-o", "json")
	var chans []api.NotificationChannel
	if code != exitOK || json.Unmarshal([]byte(out), &chans) != nil || len(chans) != 3 {
		t.Fatalf("notifications list: %d %s %s", code, out, errOut)
	}
	for _, c := range chans {
		if c.Name == "hang" && c.Sent != 0 || c.Name == "hook" && c.Sent != 1 {
			t.Fatalf("channel %+v", c)
		}
	}
	scrape := httpGet(t, "http://"+h.metrics+"/metrics")
	if !strings.Contains(scrape, `moat_notification_sent_total{channel="hook",kind="webhook"} 1`) {
		t.Fatalf("metrics lack the sent webhook:\n%s", grepLines(scrape, "moat_notification"))
	}

	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	startPlainDaemon(t, h.cfgPath)
	attack("198.51.100.7") // banned still: raised again, no decision
	attack("198.51.100.8")
	waitFor(t, 15*time.Second, "the new attacker's message", func() bool { return len(received()) >= 2 })
	time.Sleep(500 * time.Millisecond)
	got := received()
	if len(got) != 2 || !strings.Contains(got[1], `"value":"198.51.100.8"`) {
		t.Fatalf("after the restart the webhook got %d messages, want only the new attacker's:\n%s", len(got)-1, strings.Join(got[1:], "\n"))
	}
	checkReinject(t, h, received)
}

// checkReinject sends a stored alert again: through a named channel, and
// through the profile's channels when none is named; an unknown channel
// or alert is refused and sends nothing.
func checkReinject(t *testing.T, h *notifyHost, received func() []string) {
	t.Helper()
	code, out, errOut := runMoat(t, "", "alerts", "list", "-c", h.cfgPath, "-o", "json")
	var alerts []api.Alert
	must(t, json.Unmarshal([]byte(out), &alerts))
	id := ""
	for _, a := range alerts {
		if a.Value == "198.51.100.7" {
			id = fmt.Sprint(a.ID)
		}
	}
	if code != exitOK || id == "" {
		t.Fatalf("alerts list: %d %s %s", code, out, errOut)
	}
	before := len(received())
	for _, bad := range [][]string{{id, "--channel", "nosuch"}, {"999999"}, {"x"}} {
		code, out, errOut := runMoat(t, "", append([]string{"notifications", "reinject", "-c", h.cfgPath}, bad...)...)
		if code == exitOK || errOut == "" {
			t.Errorf("reinject %v: exit %d, stdout %q, stderr %q: want a refusal", bad, code, out, errOut)
		}
	}
	code, out, errOut = runMoat(t, "", "notifications", "reinject", id, "--channel", "hook", "-c", h.cfgPath, "-o", "raw")
	if code != exitOK || strings.TrimSpace(out) != "hook" {
		t.Fatalf("reinject --channel hook: %d %q %s", code, out, errOut)
	}
	waitFor(t, 10*time.Second, "the reinjected alert", func() bool { return len(received()) > before })
	if got := received(); len(got) != before+1 || !strings.Contains(got[before], `"value":"198.51.100.7"`) {
		t.Fatalf("after reinject the webhook got:\n%s", strings.Join(got[before:], "\n"))
	}
	code, out, errOut = runMoat(t, "", "notifications", "reinject", id, "-c", h.cfgPath, "-o", "raw")
	if code != exitOK || strings.Join(strings.Fields(out), ",") != "hook,siem,hang" {
		t.Fatalf("reinject by profile: %d %q %s", code, out, errOut)
	}
	waitFor(t, 10*time.Second, "the profile's reinjection", func() bool { return len(received()) > before+1 })
}

type notifyHost struct {
	e2eHost
	siem, metrics string
}

func newNotifyHost(t *testing.T, hook, hang string) *notifyHost {
	t.Helper()
	dir := t.TempDir()
	siem := filepath.Join(dir, "siem", "alerts.ndjson")
	h := newNotifyHostIn(t, dir, []string{"hook", "siem", "hang"}, fmt.Sprintf(`notifications:
  hook: {kind: webhook, url: "http://%s/hook"}
  siem: {kind: file, path: %s}
  hang: {kind: webhook, url: "http://%s/hook", timeout: 1m, queue: 10}
`, hook, siem, hang))
	h.siem = siem
	return h
}

// newNotifyHostIn is a daemon configuration in dir that reads auth.log
// and bans through a profile naming channels, defined by notifications
// (a notifications: section of moat.yaml).
func newNotifyHostIn(t *testing.T, dir string, channels []string, notifications string) *notifyHost {
	t.Helper()
	h := &notifyHost{e2eHost: e2eHost{dir: dir}}
	h.cfgPath = filepath.Join(h.dir, "moat.yaml")
	h.logPath = filepath.Join(h.dir, "auth.log")
	acquis := filepath.Join(h.dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(h.logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte(fmt.Sprintf(
		"source: file\nfilenames:\n  - %s\nlabels:\n  type: syslog\n", h.logPath)), 0o644))
	profiles := filepath.Join(h.dir, "profiles.yaml")
	must(t, os.WriteFile(profiles, []byte(`name: ban
filters: ["Alert.Remediation == true && Alert.GetScope() == 'Ip'"]
decisions: [{type: ban, duration: 4h}]
notifications: [`+strings.Join(channels, ", ")+`]
on_success: break
`), 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	h.metrics = ln.Addr().String()
	ln.Close()
	root := repoRoot(t)
	cfg := daemonConfig(h.dir, root, acquis) + "  nftables: {enabled: false}\n"
	cfg = strings.Replace(cfg, "profiles: "+root+"/packaging/profiles.yaml", "profiles: "+profiles, 1)
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9641", "listen: "+h.metrics, 1)
	must(t, os.WriteFile(h.cfgPath, []byte(cfg+notifications), 0o644))
	return h
}

// startPlainDaemon runs moat run in this network namespace.
func startPlainDaemon(t *testing.T, cfgPath string) *daemonProc {
	t.Helper()
	return startDaemonCmd(t, exec.Command(os.Args[0], "run", "--config", cfgPath))
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// webhookSink is an HTTP server on loopback that keeps every body posted
// to it, until the test ends.
type webhookSink struct {
	addr   string
	mu     sync.Mutex
	bodies []string
}

func newWebhookSink(t *testing.T) *webhookSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	s := &webhookSink{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// received returns the bodies so far.
func (s *webhookSink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}
