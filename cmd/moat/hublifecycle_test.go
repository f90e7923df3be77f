package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/testutil"
)

// debianHubSnapshot returns Debian's crowdsec hub snapshot, or skips.
func debianHubSnapshot(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(defaultHubSource); err != nil {
		t.Skipf("SKIP: %s missing (apt-get install crowdsec installs the hub snapshot): %v", defaultHubSource, err)
	}
	return defaultHubSource
}

func hubListIn(t *testing.T, ns *testutil.NetNS, args ...string) map[string]hubRow {
	t.Helper()
	var rows []hubRow
	out := moatIn(t, ns, append([]string{"hub", "list", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("hub list: %v\n%s", err, out)
	}
	m := map[string]hubRow{}
	for _, r := range rows {
		m[r.Kind+"/"+r.Name] = r
	}
	return m
}

// replayAlerts replays log and returns the alerts of crowdsecurity/postfix-spam.
func replayAlerts(t *testing.T, ns *testutil.NetNS, cfg, log string) []struct {
	Scenario    string `json:"scenario"`
	Value       string `json:"value"`
	EventsCount int    `json:"events_count"`
} {
	t.Helper()
	cmd := ns.Command(os.Args[0], "replay", "-c", cfg, "--year", "2026", "--type", "syslog", "-o", "json", log)
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	var alerts []struct {
		Scenario    string `json:"scenario"`
		Value       string `json:"value"`
		EventsCount int    `json:"events_count"`
	}
	if err := json.Unmarshal(out, &alerts); err != nil {
		t.Fatalf("replay output: %v\n%s", err, out)
	}
	// Only the hub's scenario: the shipped content may detect the same
	// attack under its own name.
	kept := alerts[:0]
	for _, a := range alerts {
		if a.Scenario == "crowdsecurity/postfix-spam" {
			kept = append(kept, a)
		}
	}
	return kept
}

// TestHubLifecycleOffline runs the hub commands in a namespace with no
// network but loopback: list Debian's snapshot, install a collection, see
// a replay detect with it beside the shipped content, then upgrade from a
// newer source with one installed item edited locally.
func TestHubLifecycleOffline(t *testing.T) {
	snap := debianHubSnapshot(t)
	ns := testutil.NewNetNS(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  data: "+dir+"/data\n"), 0o644))
	log, err := filepath.Abs("testdata/hub/postfix.log")
	must(t, err)

	// Every item of the snapshot is listed, next to the shipped content.
	idx := readIndex(t, filepath.Join(snap, ".index.json"))
	rows := hubListIn(t, ns, "-c", cfg, "--source", snap)
	n := 0
	for _, kind := range hubstore.Kinds {
		for name, e := range idx[kind] {
			n++
			r, ok := rows[kind+"/"+name]
			if !ok || r.Status != "available" || r.Version != e["version"] {
				t.Errorf("%s/%s listed as %+v (present %v), want available at %v", kind, name, r, ok, e["version"])
			}
		}
	}
	if n < 100 {
		t.Fatalf("the snapshot index has %d items", n)
	}
	if r := rows["scenarios/moat/ssh-bf"]; r.Loaded != layerShipped {
		t.Errorf("shipped moat/ssh-bf listed as %+v", r)
	}

	if alerts := replayAlerts(t, ns, cfg, log); len(alerts) != 0 {
		t.Fatalf("before install the replay alerts: %+v", alerts)
	}
	moatIn(t, ns, "hub", "install", "-c", cfg, "--source", snap, "crowdsecurity/postfix")
	rows = hubListIn(t, ns, "-c", cfg, "--loaded")
	for ref, from := range map[string]string{
		"scenarios/crowdsecurity/postfix-spam": layerInstalled,
		"parsers/crowdsecurity/postfix-logs":   layerInstalled,
		"scenarios/moat/ssh-bf":                layerShipped,
		"parsers/moat/syslog-logs":             layerShipped,
	} {
		if rows[ref].Loaded != from {
			t.Errorf("%s loaded from %+v, want %s", ref, rows[ref], from)
		}
	}
	alerts := replayAlerts(t, ns, cfg, log)
	if len(alerts) != 1 || alerts[0].Scenario != "crowdsecurity/postfix-spam" || alerts[0].Value != "198.51.100.23" || alerts[0].EventsCount != 6 {
		t.Fatalf("after install the replay alerts %+v, want one postfix-spam on 198.51.100.23 after 6 events", alerts)
	}

	// A newer source: two items change, with new versions in the index.
	src2 := filepath.Join(dir, "src2")
	must(t, os.CopyFS(src2, os.DirFS(snap)))
	for _, p := range []string{"scenarios/crowdsecurity/postfix-spam.yaml", "parsers/s01-parse/crowdsecurity/postfix-logs.yaml"} {
		b, err := os.ReadFile(filepath.Join(src2, p))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(src2, p), append(b, "# newer\n"...), 0o644))
	}
	idx["scenarios"]["crowdsecurity/postfix-spam"]["version"] = "9.9"
	idx["parsers"]["crowdsecurity/postfix-logs"]["version"] = "9.9"
	b, err := json.Marshal(idx)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(src2, ".index.json"), b, 0o644))

	// The admin tunes the installed scenario: it overflows sooner.
	edited := filepath.Join(dir, "state/hub/scenarios/crowdsecurity/postfix-spam.yaml")
	orig, err := os.ReadFile(edited)
	must(t, err)
	tuned := strings.Replace(string(orig), "capacity: 5\n", "capacity: 2\n", 1)
	if tuned == string(orig) {
		t.Fatal("postfix-spam has no capacity: 5 to tune")
	}
	must(t, os.WriteFile(edited, []byte(tuned), 0o644))

	out := moatIn(t, ns, "hub", "upgrade", "-c", cfg, "--source", src2, "-o", "json")
	var changes []hubstore.Change
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "]")+1]), &changes); err != nil {
		t.Fatalf("upgrade output: %v\n%s", err, out)
	}
	got := map[string]hubstore.Change{}
	for _, c := range changes {
		got[c.Ref] = c
	}
	if c := got["scenarios/crowdsecurity/postfix-spam"]; c.Action != hubstore.Tainted {
		t.Errorf("edited scenario: %+v, want tainted", c)
	}
	if c := got["parsers/crowdsecurity/postfix-logs"]; c.Action != hubstore.Upgraded || c.To != "9.9" {
		t.Errorf("postfix-logs: %+v, want upgraded to 9.9", c)
	}
	if now, _ := os.ReadFile(edited); string(now) != tuned {
		t.Errorf("upgrade overwrote the edited scenario:\n%s", now)
	}
	rows = hubListIn(t, ns, "-c", cfg, "--source", src2)
	if r := rows["scenarios/crowdsecurity/postfix-spam"]; r.Status != hubstore.StateTainted || r.Loaded != layerInstalled {
		t.Errorf("edited scenario listed as %+v, want tainted", r)
	}
	if r := rows["parsers/crowdsecurity/postfix-logs"]; r.Status != "installed" || r.Version != "9.9" {
		t.Errorf("upgraded parser listed as %+v", r)
	}
	diff := moatIn(t, ns, "hub", "inspect", "-c", cfg, "--source", src2, "--diff", "crowdsecurity/postfix-spam")
	if !strings.Contains(diff, "-capacity: 2") || !strings.Contains(diff, "+capacity: 5") || !strings.Contains(diff, "tainted") {
		t.Errorf("inspect --diff:\n%s", diff)
	}
	// What runs is the edit: capacity 2 overflows on the third event.
	alerts = replayAlerts(t, ns, cfg, log)
	if len(alerts) != 1 || alerts[0].EventsCount != 3 {
		t.Errorf("after upgrade the replay alerts %+v, want one after 3 events (the local edit)", alerts)
	}

	// Removing the collection takes its items; the shipped content stays.
	moatIn(t, ns, "hub", "remove", "-c", cfg, "--force", "crowdsecurity/postfix")
	rows = hubListIn(t, ns, "-c", cfg, "--loaded")
	if _, ok := rows["scenarios/crowdsecurity/postfix-spam"]; ok || rows["scenarios/moat/ssh-bf"].Loaded != layerShipped {
		t.Errorf("after remove: %+v", rows)
	}
}

func readIndex(t *testing.T, path string) map[string]map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	var idx map[string]map[string]map[string]any
	must(t, json.Unmarshal(b, &idx))
	return idx
}

// TestHubLocalLayerWins: a file in hub.dir overrides the installed item of
// the same name, the listing says so, and an upgrade leaves it alone.
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
	for _, pat := range []string{"parsers/*/*/*.yaml", "postoverflows/*/*/*.yaml", "scenarios/*/*.yaml", "collections/*/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return 0, err
		}
		n += len(m)
	}
	return n, nil
}
