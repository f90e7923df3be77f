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
