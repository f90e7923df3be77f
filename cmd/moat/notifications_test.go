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
	"testing"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/internal/config"
)

// TestNotificationsCLI: moat notifications list and test against the
// admin endpoints on a socket, with a webhook channel to a loopback server.
func TestNotificationsCLI(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "moat-notify-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	got := make(chan string, 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})}
	go hook.Serve(ln)
	t.Cleanup(func() { hook.Close() })

	sock := filepath.Join(dir, "moat.sock")
	cfgPath := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`state_dir: %s
api: {socket: %s}
notifications:
  hook:
    kind: webhook
    url: http://%s/services/secret-token
    body: '{"text": {{ printf "%%s banned" .Alert.Value | json }}, "test": {{ .Test }}}'
`, dir, sock, ln.Addr())), 0o644))
	cfg, err := config.Load(cfgPath)
	must(t, err)
	prof, err := profile.Parse("profiles.yaml", []byte("name: p\nfilters: [\"true\"]\nnotifications: [hook]\n"))
	must(t, err)
	m, err := loadNotifications(cfg, prof, nil)
	must(t, err)
	mux := http.NewServeMux()
	api.NotifyAdminRoutes(mux, m)
	sl, err := net.Listen("unix", sock)
	must(t, err)
	srv := &http.Server{Handler: mux}
	go srv.Serve(sl)
	t.Cleanup(func() { srv.Close() })

	code, out, errOut := runMoat(t, "", "notifications", "list", "-c", cfgPath, "-o", "table")
	if code != exitOK || !strings.Contains(out, "hook") || !strings.Contains(out, "http://"+ln.Addr().String()+"/***") || strings.Contains(out, "secret-token") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	code, out, _ = runMoat(t, "", "notifications", "test", "hook", "-c", cfgPath, "-o", "table")
	if code != exitOK || !strings.HasPrefix(out, "Sample alert sent through hook") {
		t.Fatalf("test: %d %q", code, out)
	}
	if body := <-got; body != `{"text": "198.51.100.23 banned", "test": true}` {
		t.Fatalf("webhook got %s", body)
	}
	code, out, _ = runMoat(t, "", "notifications", "list", "-c", cfgPath, "-o", "json")
	var chans []api.NotificationChannel
	if code != exitOK || json.Unmarshal([]byte(out), &chans) != nil || len(chans) != 1 || chans[0].Kind != "webhook" || chans[0].QueueCap != 1000 {
		t.Fatalf("list json: %d %s", code, out)
	}
	if code, _, errOut := runMoat(t, "", "notifications", "test", "nope", "-c", cfgPath); code != exitFailure || !strings.Contains(errOut, "no such notification channel") {
		t.Fatalf("test of an unknown channel: %d %s", code, errOut)
	}
	if code, _, _ := runMoat(t, "", "notifications", "test", "-c", cfgPath); code != exitUsage {
		t.Fatalf("test without a name: exit %d, want %d", code, exitUsage)
	}
}

// TestProfileNamesUnknownChannel: moat config check refuses a profile
// that names a channel moat.yaml lacks, at the profile's file and line,
// with exit code 2.
func TestProfileNamesUnknownChannel(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles.yaml")
	must(t, os.WriteFile(profiles, []byte(`name: ssh
filters: ["true"]
decisions: [{type: ban, duration: 4h}]
notifications:
  - slack
  - mail
`), 0o644))
	acquis := filepath.Join(dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	cfg := daemonConfig(dir, root, acquis)
	cfg = strings.Replace(cfg, "profiles: "+root+"/packaging/profiles.yaml", "profiles: "+profiles, 1)
	cfg += "notifications:\n  slack: {kind: webhook, url: \"https://hooks.slack.com/services/x\"}\n"
	cfgPath := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	code, _, errOut := runMoat(t, "", "config", "check", "-c", cfgPath)
	want := fmt.Sprintf("moat: %s:6: profile ssh: notification \"mail\": no such channel under notifications: in moat.yaml\n", profiles)
	if code != exitUsage || errOut != want {
		t.Fatalf("config check: exit %d\n got: %s\nwant: %s", code, errOut, want)
	}
}
