package api

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/moatsec/moat/enforce/notify"
	"github.com/moatsec/moat/internal/config"
)

// TestNotificationEndpoints: list shows the channels with masked targets;
// test sends through the channel (a file one here) and reports a far end
// that fails as 502 and an unknown name as 404.
func TestNotificationEndpoints(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "moat-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out := filepath.Join(dir, "alerts.ndjson")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	cfg, err := config.Parse("moat.yaml", []byte(fmt.Sprintf(`notifications:
  siem: {kind: file, path: %s}
  hook: {kind: webhook, url: "http://%s/T0/secret"}
`, out, refused)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := notify.FromConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	NotifyAdminRoutes(mux, m)
	sock := filepath.Join(dir, "s.sock")
	sl, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(sl)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(sock)

	chans, err := c.Notifications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 2 || chans[0].Name != "hook" || chans[0].Target != "http://"+refused+"/***" || chans[1].Kind != "file" {
		t.Fatalf("list %+v", chans)
	}
	res, err := c.TestNotification(t.Context(), "siem")
	if err != nil || !res.Sent {
		t.Fatalf("test siem = %+v, %v", res, err)
	}
	if b, err := os.ReadFile(out); err != nil || len(b) == 0 {
		t.Fatalf("file channel wrote nothing: %v", err)
	}
	if _, err := c.TestNotification(t.Context(), "hook"); !isStatus(err, http.StatusBadGateway) {
		t.Fatalf("test of a refusing webhook = %v, want 502", err)
	}
	if _, err := c.TestNotification(t.Context(), "nope"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("test of an unknown channel = %v, want 404", err)
	}
	chans, _ = c.Notifications(t.Context())
	if chans[0].LastError == "" {
		t.Fatalf("the failed test left no last error: %+v", chans[0])
	}
}
