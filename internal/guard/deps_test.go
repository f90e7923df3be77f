package guard

import (
	"os/exec"
	"strings"
	"testing"
)

// TestInternalImportsNeitherDetectNorEnforce: internal/ holds small helpers
// both halves use; one that pulled in detect or enforce would tie the two
// together through it, which design.md's dependency rule forbids.
func TestInternalImportsNeitherDetectNorEnforce(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("SKIP: no go tool on PATH to list dependencies: %v", err)
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./internal/...")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, dep := range fields[1:] {
			for _, banned := range []string{"detect", "enforce"} {
				p := modulePath + banned
				if dep == p || strings.HasPrefix(dep, p+"/") {
					t.Errorf("%s depends on %s", fields[0], dep)
				}
			}
		}
	}
}
