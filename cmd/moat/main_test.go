package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets tests run the test binary as the moat binary: with
// MOAT_TEST_MAIN=1 in its environment it behaves exactly like moat.
func TestMain(m *testing.M) {
	if os.Getenv("MOAT_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// moatCommand returns a command that runs moat with args.
func moatCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	return cmd
}

// runMoat runs moat in-process and returns its exit code and output.
func runMoat(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runMoat(t, "", "version")
	if code != exitOK || !strings.HasPrefix(out, "moat ") {
		t.Fatalf("moat version = %d %q", code, out)
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	code, _, errOut := runMoat(t, "", "version", "--no-such-flag")
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d (%s)", code, exitUsage, errOut)
	}
}

func TestConfigCheckBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/moat.yaml"
	if err := os.WriteFile(path, []byte("api:\n  socket: /run/moat.sock\n  listen: 127.0.0.1:8088\n  colour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runMoat(t, "", "config", "check", "--config", path)
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
	want := path + `:4: unknown key "colour"`
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("stderr = %q, want one line naming %s", errOut, want)
	}
}

func TestConfigCheckMissingExplicitFile(t *testing.T) {
	code, _, errOut := runMoat(t, "", "config", "check", "--config", t.TempDir()+"/none.yaml")
	if code != exitUsage {
		t.Fatalf("exit code %d for a missing --config file (%s)", code, errOut)
	}
	if !strings.Contains(errOut, "none.yaml") {
		t.Fatalf("stderr %q does not name the missing file", errOut)
	}
}
