package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/packaging"
)

type nopEnforcer struct{ applied int }

func (n *nopEnforcer) Apply(_ context.Context, add, remove []model.Decision) error {
	n.applied += len(add) + len(remove)
	return nil
}

// adminDaemon serves the admin API on a socket like the daemon does and
// returns a config file pointing at it.
func adminDaemon(t *testing.T) (string, *decision.Service) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moat-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return serveAdmin(t, dir, filepath.Join(dir, "moat.db"))
}

// serveAdmin opens the store at db and serves the admin API over it on a
// socket in dir; it returns a config file pointing at the socket.
func serveAdmin(t *testing.T, dir, db string) (string, *decision.Service) {
	t.Helper()
	st, err := store.Open(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prof, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := decision.New(st, prof, &nopEnforcer{}, netip.MustParsePrefix("198.18.250.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(svc, st, func(context.Context) (api.Status, error) {
		return api.Status{Version: "0.0.0-test", Backends: []api.Backend{{Name: "nftables", Entries: 2}}, Sources: []api.Source{{Name: "/var/log/auth.log", Kind: "file", Lines: 12}}}, nil
	})
	sock := filepath.Join(dir, "run", "moat.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeUnix(ctx, sock) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\napi:\n  socket: %s\n", dir, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Wait for the socket.
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatal(err)
		default:
		}
		runtimeSleep()
	}
	return cfg, svc
}

func TestDecisionsCLI(t *testing.T) {
	cfg, svc := adminDaemon(t)
	code, out, errOut := runMoat(t, "", "decisions", "add", "--ip", "198.18.0.7", "--reason", "ssh", "-c", cfg, "-o", "raw")
	if code != exitOK || strings.TrimSpace(out) == "" {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	code, out, _ = runMoat(t, "", "decisions", "add", "--range", "198.18.8.0/24", "--duration", "1h", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "ban 198.18.8.0/24 for 1h0m0s") {
		t.Fatalf("add range: %d %q", code, out)
	}
	code, out, _ = runMoat(t, "", "decisions", "list", "-c", cfg, "-o", "json")
	var ds []api.Decision
	if code != exitOK || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 2 || ds[1].Value != "198.18.0.7" || ds[1].Origin != "cli" || ds[1].Reason != "ssh" {
		t.Fatalf("list json: %d %s", code, out)
	}
	code, out, _ = runMoat(t, "", "decisions", "list", "--ip", "198.18.8.9", "-c", cfg, "-o", "raw")
	if code != exitOK || out != "198.18.8.0/24\n" {
		t.Fatalf("list raw: %d %q", code, out)
	}
	code, out, _ = runMoat(t, "", "decisions", "list", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "SCOPE:VALUE") || !strings.Contains(out, "Ip:198.18.0.7") || !strings.Contains(out, "Range:198.18.8.0/24") {
		t.Fatalf("list table: %d %s", code, out)
	}

	usage := [][]string{
		{"decisions", "add", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.300", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--range", "198.18.0.0/24", "-c", cfg},
		{"decisions", "add", "--range", "198.18.0.1", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--duration", "-1h", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--duration", "soon", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--type", "ban me", "-c", cfg},
		{"decisions", "delete", "-c", cfg},
		{"decisions", "delete", "--all", "--ip", "198.18.0.7", "-c", cfg},
		{"decisions", "list", "-o", "yaml", "-c", cfg},
	}
	for _, args := range usage {
		if code, _, errOut := runMoat(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errOut, exitUsage)
		}
	}
	// Allowlisted: the daemon refuses, a runtime failure.
	if code, _, errOut := runMoat(t, "", "decisions", "add", "--ip", "198.18.250.1", "-c", cfg); code != exitFailure || !strings.Contains(errOut, "allowlisted") {
		t.Errorf("allowlisted add: %d %s", code, errOut)
	}

	code, out, _ = runMoat(t, "", "decisions", "delete", "--ip", "198.18.0.7", "-c", cfg, "-o", "raw")
	if code != exitOK || out != "198.18.0.7\n" {
		t.Fatalf("delete: %d %q", code, out)
	}
	code, out, _ = runMoat(t, "", "decisions", "delete", "--all", "-c", cfg, "-o", "table")
	if code != exitOK || out != "1 decision(s) deleted.\n" {
		t.Fatalf("delete all: %d %q", code, out)
	}
	if recs, _ := svc.List(context.Background(), store.Filter{}); len(recs) != 0 {
		t.Errorf("still active: %v", recs)
	}

	// No daemon: a runtime failure that says so.
	dead := filepath.Join(t.TempDir(), "moat.yaml")
	os.WriteFile(dead, []byte("api:\n  socket: "+filepath.Join(t.TempDir(), "none.sock")+"\n"), 0o644)
	if code, _, errOut := runMoat(t, "", "decisions", "list", "-c", dead); code != exitFailure || !strings.Contains(errOut, "not running") {
		t.Errorf("no daemon: %d %s", code, errOut)
	}
}

func TestBouncersAllowlistAlertsStatusCLI(t *testing.T) {
	cfg, svc := adminDaemon(t)
	code, out, _ := runMoat(t, "", "bouncers", "add", "fw", "-c", cfg, "-o", "raw")
	key := strings.TrimSpace(out)
	if code != exitOK || len(key) != 64 || strings.Count(out, "\n") != 1 {
		t.Fatalf("bouncers add raw: %d %q", code, out)
	}
	if _, err := svc.Store().(*store.Store).AuthBouncer(context.Background(), key); err != nil {
		t.Fatalf("printed key does not authenticate: %v", err)
	}
	code, out, _ = runMoat(t, "", "bouncers", "add", "nginx", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "not be shown again") {
		t.Fatalf("bouncers add table: %d %q", code, out)
	}
	if code, _, _ := runMoat(t, "", "bouncers", "add", "fw", "-c", cfg); code != exitFailure {
		t.Errorf("duplicate bouncer: %d", code)
	}
	if code, _, _ := runMoat(t, "", "bouncers", "add", "-c", cfg); code != exitUsage {
		t.Errorf("bouncers add without a name: %d", code)
	}
	code, out, _ = runMoat(t, "", "bouncers", "list", "-c", cfg, "-o", "raw")
	if code != exitOK || out != "fw\nnginx\n" {
		t.Fatalf("bouncers list: %d %q", code, out)
	}
	if code, _, _ := runMoat(t, "", "bouncers", "delete", "fw", "-c", cfg); code != exitOK {
		t.Fatalf("bouncers delete: %d", code)
	}
	if code, _, _ := runMoat(t, "", "bouncers", "delete", "fw", "-c", cfg); code != exitFailure {
		t.Errorf("bouncers delete twice: %d", code)
	}

	// Allowlist lifts bans.
	runMoat(t, "", "decisions", "add", "--ip", "198.18.3.3", "-c", cfg)
	code, out, _ = runMoat(t, "", "allowlist", "add", "198.18.3.0/24", "--reason", "office", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "1 active decision(s) lifted") {
		t.Fatalf("allowlist add: %d %q", code, out)
	}
	if code, _, _ := runMoat(t, "", "allowlist", "add", "198.18.4.4", "-c", cfg); code != exitUsage {
		t.Errorf("allowlist add without reason: %d", code)
	}
	if code, _, _ := runMoat(t, "", "allowlist", "add", "nope", "--reason", "x", "-c", cfg); code != exitUsage {
		t.Errorf("allowlist add bad value: %d", code)
	}
	code, out, _ = runMoat(t, "", "allowlist", "list", "-c", cfg, "-o", "raw")
	if code != exitOK || out != "198.18.250.0/24\n198.18.3.0/24\n" {
		t.Fatalf("allowlist list: %d %q", code, out)
	}
	if code, _, errOut := runMoat(t, "", "allowlist", "delete", "198.18.250.0/24", "-c", cfg); code != exitFailure || !strings.Contains(errOut, "configuration") {
		t.Errorf("delete config entry: %d %s", code, errOut)
	}
	if code, _, _ := runMoat(t, "", "allowlist", "delete", "198.18.3.0/24", "-c", cfg); code != exitOK {
		t.Errorf("allowlist delete: %d", code)
	}

	// Alerts.
	a := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: "Ip", Value: "198.18.5.5", Source: netip.MustParsePrefix("198.18.5.5/32"), Remediation: true, EventsCount: 6, Meta: map[string]string{"service": "ssh"}}
	if _, err := svc.HandleAlert(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runMoat(t, "", "alerts", "list", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "crowdsecurity/ssh-bf") || !strings.Contains(out, "Ip:198.18.5.5") {
		t.Fatalf("alerts list: %d %s", code, out)
	}
	code, id, _ := runMoat(t, "", "alerts", "list", "-c", cfg, "-o", "raw")
	if code != exitOK {
		t.Fatalf("alerts list -o raw: exit %d", code)
	}
	code, out, _ = runMoat(t, "", "alerts", "inspect", strings.TrimSpace(id), "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "service: ssh") || !strings.Contains(out, "Decisions:") {
		t.Fatalf("alerts inspect: %d %s", code, out)
	}
	if code, _, _ := runMoat(t, "", "alerts", "inspect", "999", "-c", cfg); code != exitFailure {
		t.Errorf("inspect missing: %d", code)
	}
	if code, _, _ := runMoat(t, "", "alerts", "inspect", "x", "-c", cfg); code != exitUsage {
		t.Errorf("inspect bad id: %d", code)
	}

	// Status.
	code, out, _ = runMoat(t, "", "status", "-c", cfg, "-o", "json")
	var st api.Status
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.Version != "0.0.0-test" || st.Store.ActiveDecisions != 1 || st.Store.Alerts != 1 || len(st.Bouncers) != 1 {
		t.Fatalf("status json: %d %s", code, out)
	}
	code, out, _ = runMoat(t, "", "status", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "nftables") || !strings.Contains(out, "/var/log/auth.log") || !strings.Contains(out, "active decisions") {
		t.Fatalf("status table: %d %s", code, out)
	}
}

func runtimeSleep() { time.Sleep(10 * time.Millisecond) }
