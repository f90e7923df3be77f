package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/testutil"
)

func TestHubLocalLayerWins(t *testing.T) {
	snap := debianHubSnapshot(t)
	ns := testutil.NewNetNS(t)
	root := repoRoot(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	copyTree(t, filepath.Join(root, "packaging/hub"), local)
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  dir: "+local+"\n  patterns: "+root+"/packaging/patterns\n  data: "+dir+"/data\n"), 0o644))
	moatIn(t, ns, "hub", "install", "-c", cfg, "--source", snap, "crowdsecurity/postfix")

	override := filepath.Join(local, "scenarios/crowdsecurity/postfix-spam.yaml")
	b, err := os.ReadFile(filepath.Join(snap, "scenarios/crowdsecurity/postfix-spam.yaml"))
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(override), 0o755))
	must(t, os.WriteFile(override, append(b, "# local\n"...), 0o644))

	rows := hubListIn(t, ns, "-c", cfg, "--loaded")
	r := rows["scenarios/crowdsecurity/postfix-spam"]
	if r.Loaded != layerLocal || r.Shadows != layerInstalled || r.Path != override {
		t.Errorf("overridden scenario listed as %+v, want local over installed from %s", r, override)
	}
	if r := rows["parsers/crowdsecurity/postfix-logs"]; r.Loaded != layerInstalled {
		t.Errorf("postfix-logs listed as %+v", r)
	}
	moatIn(t, ns, "hub", "upgrade", "-c", cfg, "--source", snap)
	if now, _ := os.ReadFile(override); !strings.HasSuffix(string(now), "# local\n") {
		t.Errorf("upgrade touched the local override:\n%s", now)
	}
}

// TestHubLayersDefault: at the default hub.dir the shipped content is the
// base and installed items layer over it; set elsewhere, hub.dir replaces
// the shipped content as before.
func TestHubLayersDefault(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = dir
	cfg.Hub.Dir = ""
	shipped := func() (string, error) { return "/shipped", nil }
	layers, err := hubLayers(cfg, shipped)
	must(t, err)
	if len(layers) != 1 || layers[0] != (hubLayer{layerShipped, "/shipped"}) {
		t.Fatalf("layers before install = %+v", layers)
	}
	must(t, os.MkdirAll(filepath.Join(dir, "hub"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "hub", hubstore.StateFile), []byte(`{"items":[]}`), 0o644))
	layers, err = hubLayers(cfg, shipped)
	must(t, err)
	if len(layers) != 2 || layers[1] != (hubLayer{layerInstalled, filepath.Join(dir, "hub")}) {
		t.Errorf("layers after install = %+v", layers)
	}
	cfg.Hub.Dir = t.TempDir()
	layers, err = hubLayers(cfg, shipped)
	must(t, err)
	if len(layers) != 2 || layers[0].label != layerInstalled || layers[1] != (hubLayer{layerLocal, cfg.Hub.Dir}) {
		t.Errorf("layers with hub.dir elsewhere = %+v", layers)
	}
}

// TestHubInstallRefusedIsUndone: an install whose result the engine would
// refuse changes nothing, so the daemon's next reload still works.
func TestHubInstallRefusedIsUndone(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	files := map[string]string{
		"collections/acme/broken.yaml":            "name: acme/broken\nparsers:\n  - acme/broken-logs\n",
		"parsers/s01-parse/acme/broken-logs.yaml": "name: acme/broken-logs\nfilter: \"evt.Parsed.program == 'x'\"\ngrok:\n  pattern: '%{NO_SUCH_PATTERN:x}'\n  apply_on: message\n",
	}
	for p, body := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(src, p), []byte(body), 0o644))
	}
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  data: "+dir+"/data\n"), 0o644))
	code, out, errOut := runMoat(t, "", "hub", "install", "-c", cfg, "--source", src, "acme/broken")
	// Bad content is the admin's to fix: exit 2, as moat config check.
	if code != exitUsage || !strings.Contains(errOut, "NO_SUCH_PATTERN") || !strings.Contains(errOut, "nothing changed") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state/hub")); !os.IsNotExist(err) {
		t.Errorf("a refused install left the store: %v", err)
	}
	code, _, errOut = runMoat(t, "", "hub", "install", "-c", cfg, "--source", src, "acme/nothing")
	if code != exitUsage {
		t.Errorf("installing an unknown item: exit %d, want %d: %s", code, exitUsage, errOut)
	}
}

// TestHubStatusCounts: moat status counts the loaded items per layer and
// the tainted ones.
func TestHubStatusCounts(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(filepath.Join(src, "scenarios/acme"), 0o755))
	// The same name as a shipped scenario, and one of its own.
	ssh, err := os.ReadFile(filepath.Join(root, "packaging/hub/scenarios/moat/ssh-bf.yaml"))
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(src, "scenarios/moat"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "scenarios/moat/ssh-bf.yaml"), ssh, 0o644))
	must(t, os.WriteFile(filepath.Join(src, "scenarios/acme/extra.yaml"), []byte("type: trigger\nname: acme/extra\ndescription: d\nfilter: \"evt.Meta.log_type == 'acme'\"\ngroupby: evt.Meta.source_ip\n"), 0o644))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  data: "+dir+"/data\n"), 0o644))
	if code, _, errOut := runMoat(t, "", "hub", "install", "-c", cfg, "--source", src, "moat/ssh-bf", "acme/extra"); code != exitOK {
		t.Fatalf("install: exit %d: %s", code, errOut)
	}
	appendTo := func(p, s string) {
		b, err := os.ReadFile(p)
		must(t, err)
		must(t, os.WriteFile(p, append(b, s...), 0o644))
	}
	appendTo(filepath.Join(dir, "state/hub/scenarios/acme/extra.yaml"), "# mine\n")

	if _, err := os.Stat(config.Default().Hub.Dir); err == nil {
		t.Skipf("SKIP: %s exists on this host and would add its items as the local layer", config.Default().Hub.Dir)
	}
	c, err := resolveContent(config.Default())
	must(t, err)
	shipped, err := hubListShipped(c.hubDir)
	c.cleanup()
	must(t, err)
	a := &app{configPath: cfg}
	cmd := &cobra.Command{}
	cmd.Flags().String("config", "", "")
	must(t, cmd.Flags().Set("config", cfg))
	counters := map[string]int64{}
	a.hubStatus(cmd, counters)
	want := map[string]int64{
		"hub_items_shipped":    int64(shipped - 1),
		"hub_items_installed":  2,
		"hub_items_local":      0,
		"hub_items_overriding": 1,
		"hub_items_tainted":    1,
	}
	for k, v := range want {
		if counters[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, counters[k], v, counters)
		}
	}
}

// hubListShipped counts the hub items the loader indexes in dir.
func hubListShipped(dir string) (int, error) {
	n := 0
	for _, pat := range []string{"parsers/*/*/*.yaml", "postoverflows/*/*/*.yaml", "scenarios/*/*.yaml", "collections/*/*.yaml", "contexts/*/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return 0, err
		}
		n += len(m)
	}
	return n, nil
}
