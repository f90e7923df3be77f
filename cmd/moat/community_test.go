package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
