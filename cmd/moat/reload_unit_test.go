package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moatsec/moat/internal/config"
)

func TestKeepFrozen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		frozen []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"log level and hub are live", func(c *config.Config) { c.LogLevel = "debug"; c.Hub.MaxBuckets = 5 }, nil},
		{"listen addresses", func(c *config.Config) { c.API.Listen = "127.0.0.1:1"; c.Metrics.Listen = "" }, []string{"api", "metrics.listen"}},
		{"state and backends", func(c *config.Config) { c.StateDir = "/elsewhere"; c.Enforce.XDP.Enabled = true }, []string{"state_dir", "enforce"}},
		{"allowlist and profiles", func(c *config.Config) { c.Allowlist = []string{"198.18.0.0/24"}; c.Profiles = "/p.yaml" }, []string{"allowlist", "profiles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running := config.Default()
			next := config.Default()
			tc.change(&next)
			want := next
			got := keepFrozen(running, &next)
			if !slices.Equal(got, tc.frozen) {
				t.Fatalf("needs restart %v, want %v", got, tc.frozen)
			}
			// What needs a restart keeps its running value; the rest is
			// taken.
			if next.StateDir != running.StateDir || next.API != running.API || next.Metrics != running.Metrics ||
				next.Enforce.XDP.Enabled != running.Enforce.XDP.Enabled || next.Profiles != running.Profiles || len(next.Allowlist) != 0 {
				t.Errorf("a setting that needs a restart changed: %+v", next)
			}
			if next.LogLevel != want.LogLevel || next.Hub.MaxBuckets != want.Hub.MaxBuckets {
				t.Errorf("a live setting was not taken: %+v", next)
			}
		})
	}
}

// TestFingerprint: the same content in another directory (the built-in
// content is extracted afresh on every load) keeps the engine; any change
// to what the engine reads replaces it.
func TestFingerprint(t *testing.T) {
	copyHub := func(t *testing.T) content {
		dir := t.TempDir()
		must(t, os.CopyFS(filepath.Join(dir, "hub"), os.DirFS(filepath.Join(repoRoot(t), "packaging", "hub"))))
		must(t, os.CopyFS(filepath.Join(dir, "patterns"), os.DirFS(filepath.Join(repoRoot(t), "packaging", "patterns"))))
		return content{hubDir: filepath.Join(dir, "hub"), patternDir: filepath.Join(dir, "patterns")}
	}
	cfg := config.Default()
	cfg.Hub.Data = t.TempDir()
	base := copyHub(t)
	sum := func(t *testing.T, cfg config.Config, c content) string {
		t.Helper()
		fp, err := fingerprint(cfg, c)
		must(t, err)
		return fp
	}
	want := sum(t, cfg, base)
	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, cfg *config.Config, c content)
		differs bool
	}{
		{"same content elsewhere", func(*testing.T, *config.Config, content) {}, false},
		{"a new scenario", func(t *testing.T, _ *config.Config, c content) {
			must(t, os.WriteFile(filepath.Join(c.hubDir, "scenarios", "moat", "new.yaml"), []byte(reloadProbe), 0o644))
		}, true},
		{"an edited pattern", func(t *testing.T, _ *config.Config, c content) {
			entries, err := os.ReadDir(c.patternDir)
			must(t, err)
			f, err := os.OpenFile(filepath.Join(c.patternDir, entries[0].Name()), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			defer f.Close()
			_, err = f.WriteString("MOATX \\d+\n")
			must(t, err)
		}, true},
		{"a data file", func(t *testing.T, cfg *config.Config, _ content) {
			cfg.Hub.Data = t.TempDir()
			must(t, os.WriteFile(filepath.Join(cfg.Hub.Data, "bad_user_agents.txt"), []byte("x\n"), 0o644))
		}, true},
		{"simulation", func(_ *testing.T, cfg *config.Config, _ content) { cfg.Simulation = []string{"moat/ssh-bf"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cfg := copyHub(t), cfg
			tc.change(t, &cfg, c)
			if got := sum(t, cfg, c); (got != want) != tc.differs {
				t.Errorf("fingerprint changed: %v, want %v", got != want, tc.differs)
			}
		})
	}
}
