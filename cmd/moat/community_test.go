package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/server"
)

// The operator's path on a host: register with a token, status, a second
// register refused, unregister; and explain on the server's database.
func TestCommunityCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "server.db")
	srv, err := server.Open(context.Background(), server.Config{DSN: db, EnrolmentToken: "tok-123"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.Close()
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\n"), 0o644))
	mid := filepath.Join(dir, "machine-id")
	must(t, os.WriteFile(mid, []byte("4c4c4544004d3510804bb4c04f4e3332\n"), 0o644))
	moat := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(append([]string{"--config", cfg, "-o", "table"}, args...), strings.NewReader(""), &out, &errb); code != want {
			t.Fatalf("moat %v: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	moat(exitUsage, "community", "register")
	out := moat(exitOK, "community", "register", "--server", hs.URL, "--token", "tok-123", "--machine-id", mid)
	if strings.Contains(out, "4c4c4544") {
		t.Fatalf("register printed the machine id: %s", out)
	}
	if out := moat(exitOK, "community", "status"); !strings.Contains(out, "accepts") {
		t.Fatalf("status: %s", out)
	}
	moat(exitUsage, "community", "register", "--server", hs.URL, "--machine-id", mid)
	moat(exitOK, "community", "unregister")
	if out := moat(exitOK, "community", "status"); !strings.Contains(out, "not registered") {
		t.Fatalf("status after unregister: %s", out)
	}
	out = moat(exitOK, "community", "explain", "--db", db, "45.77.1.2")
	if !strings.Contains(out, "listed false") || !strings.Contains(out, "0 trusted reporters") {
		t.Fatalf("explain: %s", out)
	}
	moat(exitUsage, "community", "explain", "--db", db, "not-an-ip")
}

// moat community serve runs until SIGTERM and exits 0; a host registers
// with it, and an unenrolled one is refused.
func TestCommunityServe(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	tokFile := filepath.Join(dir, "token")
	must(t, os.WriteFile(tokFile, []byte("tok-serve\n"), 0o600))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\n"), 0o644))
	cmd := exec.Command(os.Args[0], "--config", cfg, "community", "serve", "--listen", addr, "--enrolment-token-file", tokFile, "--db", filepath.Join(dir, "s.db"))
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	waitFor(t, 20*time.Second, "the server to listen", func() bool { return strings.Contains(logs.String(), "community server listening") })
	mid := filepath.Join(dir, "machine-id")
	must(t, os.WriteFile(mid, []byte("abcdef0123456789\n"), 0o644))
	var out, errb bytes.Buffer
	if code := run([]string{"--config", cfg, "community", "register", "--server", "http://" + addr, "--token", "wrong", "--machine-id", mid}, strings.NewReader(""), &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "wrong enrolment token") {
		t.Fatalf("wrong token: exit %d: %s%s", code, out.String(), errb.String())
	}
	// The right token enrols the registered host; unregister leaves the
	// server, so the host can register again.
	for _, args := range [][]string{
		{"community", "register", "--server", "http://" + addr, "--token", "tok-serve", "--machine-id", mid},
		{"community", "status"},
		{"community", "unregister"},
		{"community", "register", "--server", "http://" + addr, "--token", "tok-serve", "--machine-id", mid},
	} {
		out.Reset()
		errb.Reset()
		if code := run(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &errb); code != exitOK {
			t.Fatalf("moat %v: exit %d: %s%s", args, code, out.String(), errb.String())
		}
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if out := moatOut(t, cfg, "community", "serve", "--listen", "0.0.0.0:1"); !strings.Contains(out, "not loopback") {
		t.Fatalf("serve off loopback without TLS: %s", out)
	}
}

func moatOut(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	run(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &errb)
	return out.String() + errb.String()
}
