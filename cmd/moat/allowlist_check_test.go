package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/config"
)

var spaces = regexp.MustCompile(" {2,}")

var updateAllowGolden = flag.Bool("update-allowlist", false, "rewrite testdata/allowlist-check*.golden")

// allowDaemon serves the allowlist endpoints over a manager fed by a
// configuration (entries with comments and expiries), an include file and
// a utmp file with one session; it returns the CLI's config file.
func allowDaemon(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moat-allow-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	include := filepath.Join(dir, "office.txt")
	if err := os.WriteFile(include, []byte("# office\n192.0.2.0/25   # front desk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	utmp := filepath.Join(dir, "utmp")
	rec := make([]byte, 384)
	binary.NativeEndian.PutUint16(rec, 7) // USER_PROCESS
	copy(rec[8:], "pts/0")
	copy(rec[44:], "alice")
	copy(rec[348:], netip.MustParseAddr("192.0.2.9").AsSlice())
	binary.NativeEndian.PutUint32(rec[340:], 1764547300)
	if err := os.WriteFile(utmp, rec, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("/etc/moat/moat.yaml", []byte(`allowlist:
  - 198.18.0.1
  - {value: 192.0.2.0/24, comment: office, expires: 2099-01-01T00:00:00Z}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "moat.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := decision.New(st, &profile.Set{}, nil, cfg.AllowlistPrefixes()...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := dynallow.NewRuntime(ctx, svc, st)
	if err != nil {
		t.Fatal(err)
	}
	m := dynallow.New(dynallow.Config{Static: staticAllowlist(cfg), Files: []string{include}, Runtime: rt.Entries, UTMP: utmp})
	m.Step(ctx)
	mux := http.NewServeMux()
	api.AllowlistAdminRoutes(mux, api.AllowlistAdmin{Manager: m, Runtime: rt, Builtin: func(p netip.Prefix) error {
		if p.Addr().IsLoopback() {
			return fmt.Errorf("loopback")
		}
		return nil
	}})
	sock := filepath.Join(dir, "moat.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	conf := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("state_dir: %s\napi:\n  socket: %s\n", dir, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Step(ctx) }) // keeps m reachable while served
	return conf
}

func TestAllowlistCheckGolden(t *testing.T) {
	conf := allowDaemon(t)
	var got strings.Builder
	for _, c := range [][]string{
		{"192.0.2.9", "-o", "table"},
		{"192.0.2.200", "-o", "table"},
		{"198.18.0.1", "-o", "table"},
		{"198.18.0.2", "-o", "table"},
		{"127.0.0.1", "-o", "table"},
		{"192.0.2.9", "-o", "raw"},
		{"192.0.2.200", "-o", "json"},
	} {
		code, out, errOut := runMoat(t, "", append([]string{"allowlist", "check", "-c", conf}, c...)...)
		if code != exitOK {
			t.Fatalf("check %v: exit %d: %s", c, code, errOut)
		}
		// The include file lives in a temporary directory, whose name
		// changes the width of the table's columns.
		out = strings.ReplaceAll(out, filepath.Dir(conf), "$DIR")
		if c[len(c)-1] == "table" {
			out = spaces.ReplaceAllString(out, "  ")
		}
		fmt.Fprintf(&got, "$ moat allowlist check %s\n%s\n", strings.Join(c, " "), out)
	}
	golden := filepath.Join("testdata", "allowlist-check.golden")
	if *updateAllowGolden {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("check output differs from %s (-update-allowlist rewrites it):\n%s", golden, got.String())
	}
	if code, _, errOut := runMoat(t, "", "allowlist", "check", "-c", conf, "home.example.org"); code != exitUsage {
		t.Errorf("check of a name: exit %d (%s), want usage", code, errOut)
	}
}

// An entry added with --for is protected until then, and check says so.
func TestAllowlistAddFor(t *testing.T) {
	conf := allowDaemon(t)
	code, _, errOut := runMoat(t, "", "allowlist", "add", "198.51.100.7", "--comment", "vendor support", "--for", "24h", "-c", conf, "-o", "table")
	if code != exitOK {
		t.Fatalf("add --for: exit %d: %s", code, errOut)
	}
	code, out, errOut := runMoat(t, "", "allowlist", "check", "198.51.100.7", "-c", conf, "-o", "json")
	if code != exitOK || !strings.Contains(out, `"comment": "vendor support"`) || !strings.Contains(out, `"source": "runtime"`) {
		t.Fatalf("check after add: exit %d %s %s", code, out, errOut)
	}
	if !strings.Contains(out, time.Now().Add(24*time.Hour).UTC().Format("2006-01-02T")) {
		t.Errorf("check does not show the expiry a day from now: %s", out)
	}
	for _, bad := range [][]string{
		{"--for", "-1h"},
		{"--expires", "2001-01-01"},
		{"--expires", "soon"},
		{"--for", "1h", "--expires", "2099-01-01"},
	} {
		args := append([]string{"allowlist", "add", "198.51.100.8", "--comment", "x", "-c", conf}, bad...)
		if code, _, _ := runMoat(t, "", args...); code != exitUsage {
			t.Errorf("add %v: exit %d, want usage", bad, code)
		}
	}
}
