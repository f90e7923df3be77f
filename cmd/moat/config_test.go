package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Each silent misconfiguration is a one-line error naming the file and
// line, and exit code 2, before anything is loaded.
func TestConfigCheckMisconfigurations(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		name, yaml string
		want       string // regexp after "moat: FILE:"
	}{
		{"mistyped hub.dir", "hub:\n  dir: %s/hbu\n", `^2: hub\.dir ".*/hbu": no such directory`},
		{"mistyped acquisition.dir", "hub:\n  dir: " + root + "/packaging/hub\nacquisition:\n  dir: %s/acquis.dd\n", `^4: acquisition\.dir ".*/acquis\.dd": no such directory`},
		{"negative verify_interval", "enforce:\n  batch_max: 10\n  verify_interval: -5s # %s\n", `^3: verify_interval -5s: want 0 \(no drift repair\) or at least 1s$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "moat.yaml")
			body := strings.ReplaceAll(tc.yaml, "%s", dir)
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runMoat(t, "", "config", "check", "--config", path)
			if code != exitUsage {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errOut)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			prefix := "moat: " + path + ":"
			if len(lines) != 1 || !strings.HasPrefix(lines[0], prefix) || !regexp.MustCompile(tc.want).MatchString(strings.TrimPrefix(lines[0], prefix)) {
				t.Fatalf("stderr = %q, want one line %s%s", errOut, prefix, tc.want)
			}
		})
	}
}

// config check prints the effective configuration without its secrets.
func TestConfigCheckRedacts(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "moat.yaml")
	body := "state_dir: " + dir + "\nhub:\n  dir: " + root + "/packaging/hub\n  data: " + dir + "/data\n" +
		"fleet:\n  server: https://fleet.example:8089\n  machine_id: agent-1\n  password: s3cr-fleet-pass\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMoat(t, "", "config", "check", "--config", path)
	if code != exitOK || !strings.Contains(out, "machine_id: agent-1") {
		t.Fatalf("config check: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "s3cr") {
		t.Errorf("config check printed the fleet password:\n%s", out)
	}
}
