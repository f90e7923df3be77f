package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// A start that fails on its own sockets (another daemon on api.socket, a
// port in use) fails before the kernel: no table inet moat is left behind.
func TestListenFailureLeavesKernelUntouched(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "moat-startfail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// A live socket at api.socket: a daemon already runs.
	sock := filepath.Join(dir, "moat.sock")
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	must(t, os.MkdirAll(filepath.Join(dir, "acquis.d"), 0o755))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\napi:\n  socket: "+sock+"\n  listen: \"\"\nmetrics:\n  listen: \"\"\nacquisition:\n  dir: "+dir+"/acquis.d\n"), 0o644))

	ns := testutil.NewNetNS(t)
	cmd := ns.Command(os.Args[0], "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == exitOK {
		t.Fatalf("moat run beside a live daemon socket: %v, want a failure\n%s", err, out)
	}
	if tables := ns.Run(t, "nft", "list", "tables"); strings.Contains(tables, "moat") {
		t.Fatalf("a start that failed on its socket created nftables state:\n%s\nmoat said: %s", tables, out)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the other daemon's socket was removed: %v", err)
	}
}
