package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	var mu sync.Mutex
	var bodies []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	h := &e2eHost{dir: t.TempDir()}
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
notifications: [hook]
on_success: break
`), 0o644))
	root := repoRoot(t)
	cfg := daemonConfig(h.dir, root, acquis) + "  nftables: {enabled: false}\n"
	cfg = strings.Replace(cfg, "profiles: "+root+"/packaging/profiles.yaml", "profiles: "+profiles, 1)
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9641", `listen: ""`, 1)
	cfg += fmt.Sprintf(`notifications:
  hook:
    kind: webhook
    url: "http://%s/hook"
    headers: {Content-Type: text/plain}
    body: '{{ .Alert.Value }} tried {{ join "," .Alert.Context.target_user }}'
`, ln.Addr())
	must(t, os.WriteFile(h.cfgPath, []byte(cfg), 0o644))
	startPlainDaemon(t, h.cfgPath)

	users := []string{"root", "admin", "root", "oracle", "admin", "git", "root", "deploy"}
	var lines []string
	for i, u := range users {
		lines = append(lines, fmt.Sprintf("Failed password for invalid user %s from 198.51.100.9 port %d ssh2", u, 40000+i))
	}
	h.appendLines(t, lines...)
	var body string
	waitFor(t, 15*time.Second, "the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
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
