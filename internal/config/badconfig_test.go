package config

import (
	"errors"
	"path/filepath"
	"testing"
)

// checkBadConfigs loads every *.bad.yaml of dir as the daemon does (Load,
// then CheckPaths) and wants each to fail with a *Error reading exactly
// want[file name]: every bad file has its expectation and the reverse.
func checkBadConfigs(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d bad configs in %s, %d expectations", len(files), dir, len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err == nil {
				err = cfg.CheckPaths()
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *config.Error", err)
			}
			if got := err.Error(); got != want[filepath.Base(f)] {
				t.Errorf("error\n got: %s\nwant: %s", got, want[filepath.Base(f)])
			}
		})
	}
}
