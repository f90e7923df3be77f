package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// TestDaemonAlertContext runs moat (no kernel backend, so no root) on an
// sshd log with the shipped hub, whose sshd collection names the bf_base
// context: a brute force trying several users is stored with the users
// tried, moat alerts inspect shows them, and a webhook template reads
// them from .Alert.Context.
func TestDaemonAlertContext(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP in -short mode: runs the daemon")
	}
	hook := newWebhookSink(t)
	h := newNotifyHostIn(t, t.TempDir(), []string{"hook"}, fmt.Sprintf(`notifications:
  hook:
    kind: webhook
    url: "http://%s/hook"
    headers: {Content-Type: text/plain}
    body: '{{ .Alert.Value }} tried {{ join "," .Alert.Context.target_user }}'
`, hook.addr))
	startPlainDaemon(t, h.cfgPath)

	users := []string{"root", "admin", "root", "oracle", "admin", "git", "root", "deploy"}
	var lines []string
	for i, u := range users {
		lines = append(lines, fmt.Sprintf("Failed password for invalid user %s from 198.51.100.9 port %d ssh2", u, 40000+i))
	}
	h.appendLines(t, lines...)
	var body string
	waitFor(t, 15*time.Second, "the webhook", func() bool {
		for _, b := range hook.received() {
			if strings.HasPrefix(b, "198.51.100.9 tried ") {
				body = b
				return true
			}
		}
		return false
	})
	// The bucket kept the events up to its overflow: the users tried
	// by then, each once, in the order tried.
	if !strings.HasPrefix(body, "198.51.100.9 tried root,admin,oracle,git") {
		t.Fatalf("webhook body %q", body)
	}

	code, out, errOut := runMoat(t, "", "alerts", "list", "-c", h.cfgPath, "-o", "json")
	var alerts []api.Alert
	if code != exitOK || json.Unmarshal([]byte(out), &alerts) != nil || len(alerts) == 0 {
		t.Fatalf("alerts list: %d %s %s", code, out, errOut)
	}
	id := fmt.Sprint(alerts[len(alerts)-1].ID)
	code, out, errOut = runMoat(t, "", "alerts", "inspect", id, "-c", h.cfgPath, "-o", "table")
	if code != exitOK || !strings.Contains(out, "  Context:\n    target_user:\n      root\n      admin\n      oracle\n") {
		t.Fatalf("alerts inspect %s: %d %s\n%s", id, code, errOut, out)
	}
}
