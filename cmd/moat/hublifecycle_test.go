package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/hubstore"
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
