package scenario

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/exprenv"
)

// hubDir is the CrowdSec hub snapshot beside the checkout.
const hubDir = "../../../shared/crowdsec-hub"

func hubScenarioFiles(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(hubDir, "hub", "scenarios")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("SKIP: hub snapshot missing at %s: %v", root, err)
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func hubEnv() *exprenv.Env { return exprenv.New(filepath.Join(hubDir, "data")) }

// TestLoadHubScenarios loads every hub scenario file unchanged.
func TestLoadHubScenarios(t *testing.T) {
	files := hubScenarioFiles(t)
	env := hubEnv()
	total := 0
	var failed []string
	for _, f := range files {
		set, err := Load([]string{f}, Options{Env: env})
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		total += len(set.Names())
	}
	for _, f := range failed {
		t.Errorf("cannot load: %s", f)
	}
	t.Logf("loaded %d scenarios from %d files, %d files failed", total, len(files), len(failed))
	if total == 0 {
		t.Fatal("no scenario loaded")
	}
}
