package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// recordingEnforcer stands in for the kernel: it keeps what it was asked
// to enforce.
type recordingEnforcer struct {
	mu  sync.Mutex
	add []model.Decision
}

func (r *recordingEnforcer) Apply(_ context.Context, add, _ []model.Decision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add = append(r.add, add...)
	return nil
}

// replayOutcome is what a replay led to: every decision taken (simulated
// ones included), what reached the kernel, and the clock around it.
type replayOutcome struct {
	decisions []model.Decision
	enforced  []model.Decision
	before    time.Time
	after     time.Time
}

// byValue is the decisions on addr.
func byValue(ds []model.Decision, addr string) []model.Decision {
	var out []model.Decision
	for _, d := range ds {
		if model.ValueString(d.Value) == addr {
			out = append(out, d)
		}
	}
	return out
}

// configWithContent writes yamlText to a moat.yaml that takes its hub,
// patterns and profiles from the checkout, so what is installed on the
// machine cannot change the result.
func configWithContent(t *testing.T, yamlText string) string {
	t.Helper()
	root, dir := repoRoot(t), t.TempDir()
	text := yamlText + fmt.Sprintf(`
state_dir: %[1]s/state
hub:
  dir: %[2]s/packaging/hub
  patterns: %[2]s/packaging/patterns
  data: %[1]s/data
profiles: %[2]s/packaging/profiles.yaml
`, dir, root)
	path := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// replayThroughDecisions checks the configuration as moat config check
// does, replays log as moat replay does, and hands every alert to the
// decision service moat run builds (its profiles and allowlist, a store in
// a temporary directory), with the kernel replaced by a recorder.
func replayThroughDecisions(t *testing.T, cfgPath, log string) replayOutcome {
	t.Helper()
	code, _, errOut := runMoat(t, "", "config", "check", "--config", cfgPath)
	if code != exitOK || errOut != "" {
		t.Fatalf("moat config check: exit %d, stderr %q", code, errOut)
	}
	cfg, err := config.Load(cfgPath)
	must(t, err)
	c, err := resolveContent(cfg)
	must(t, err)
	defer c.cleanup()
	eng, err := loadEngine(cfg, c, true, 2026)
	must(t, err)

	logPath := filepath.Join(t.TempDir(), "auth.log")
	must(t, os.WriteFile(logPath, []byte(log), 0o644))
	r, err := acquire.OpenReplay([]string{logPath}, map[string]string{"type": "syslog"})
	must(t, err)
	defer r.Close()
	var alerts []model.Alert
	ctx := context.Background()
	must(t, replay(ctx, eng, r, 1, nil, func(as []model.Alert) { alerts = append(alerts, as...) }))

	st, err := store.Open(ctx, filepath.Join(cfg.StateDir, store.FileName), store.Options{})
	must(t, err)
	defer st.Close()
	profiles, err := loadProfiles(cfg)
	must(t, err)
	rec := &recordingEnforcer{}
	svc, err := decision.New(st, profiles, rec, cfg.AllowlistPrefixes()...)
	must(t, err)
	out := replayOutcome{before: time.Now()}
	for _, a := range alerts {
		ds, err := svc.HandleAlert(ctx, a)
		must(t, err)
		out.decisions = append(out.decisions, ds...)
	}
	out.after = time.Now()
	out.enforced = rec.add
	return out
}

// sshFailures is n failed logins from ip, every gap apart from start.
func sshFailures(ip string, start time.Time, n int, gap time.Duration) string {
	var b strings.Builder
	for i := range n {
		at := start.Add(time.Duration(i) * gap)
		fmt.Fprintf(&b, "%s victim sshd[%d]: Failed password for root from %s port %d ssh2\n", at.Format(time.Stamp), 4000+i, ip, 50000+i)
	}
	return b.String()
}

// Overrides tune detection without touching the hub: a raised capacity
// lets a source the hub file would ban through, simulate keeps its ban out
// of the kernel while storing it, and the unchanged config bans.
func TestReplayWithScenarioOverrides(t *testing.T) {
	const attacker = "198.51.100.40"
	// Eight failures a second apart: the shipped moat/ssh-bf (capacity 5,
	// 10s) overflows at the sixth.
	log := sshFailures(attacker, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), 8, time.Second)
	tests := []struct {
		name          string
		yaml          string
		wantDecisions int
		wantSimulated bool
		wantEnforced  int
	}{
		{"hub values", "", 1, false, 1},
		{"capacity raised", "scenarios:\n  - name: moat/ssh-*\n    capacity: 50\n", 0, false, 0},
		{"global simulation", "scenarios:\n  - name: \"*\"\n    simulate: true\n", 1, true, 0},
		{"simulation list", "simulation:\n  - moat/ssh-bf\n", 1, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := replayThroughDecisions(t, configWithContent(t, tt.yaml), log)
			ds := byValue(out.decisions, attacker)
			if len(ds) != tt.wantDecisions {
				t.Fatalf("%d decisions on %s, want %d: %+v", len(ds), attacker, tt.wantDecisions, out.decisions)
			}
			for _, d := range ds {
				if d.Simulated != tt.wantSimulated || d.Scenario != "moat/ssh-bf" {
					t.Errorf("decision %+v: want scenario moat/ssh-bf, simulated %v", d, tt.wantSimulated)
				}
			}
			if n := len(byValue(out.enforced, attacker)); n != tt.wantEnforced {
				t.Errorf("%d bans reached the kernel, want %d", n, tt.wantEnforced)
			}
		})
	}
}

// moat scenarios list reports the overrides with their lines, in JSON,
// and warns of one that matches nothing.
func TestScenariosList(t *testing.T) {
	path := configWithContent(t, "scenarios:\n  - name: moat/ssh-bf\n    capacity: 2\n    leakspeed: 10m\n  - name: crowdsecurity/ssh-*\n    enabled: false\n")
	code, out, errOut := runMoat(t, "", "scenarios", "list", "-o", "json", "--config", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := path + `:5: scenario override "crowdsecurity/ssh-*" matches no loaded scenario`
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr %q, want the warning %q", errOut, want)
	}
	var rows []scenarioRow
	must(t, json.Unmarshal([]byte(out), &rows))
	found := false
	for _, r := range rows {
		if r.Name != "moat/ssh-bf" {
			continue
		}
		found = true
		if r.Capacity != 2 || r.LeakSpeed != "10m" || r.From["capacity"] != path+":3" || r.From["leakspeed"] != path+":4" || r.Duration != "" || r.From["duration"] != "profiles" {
			t.Errorf("moat/ssh-bf row %+v", r)
		}
		if !strings.HasSuffix(r.From["blackhole"], "ssh-bf.yaml:9") {
			t.Errorf("blackhole from %q, want the hub file's line", r.From["blackhole"])
		}
	}
	if !found {
		t.Fatalf("moat/ssh-bf not listed: %s", out)
	}

	bad := configWithContent(t, "scenarios:\n  - name: moat/ssh-bf\n    leakspeed: soon\n")
	code, _, errOut = runMoat(t, "", "scenarios", "list", "--config", bad)
	if code != exitUsage || !strings.Contains(errOut, bad+`:3: scenarios[0] leakspeed "soon"`) {
		t.Errorf("bad leakspeed: exit %d, stderr %q", code, errOut)
	}
}

// readmeSnippet is the moat.yaml block of the README's fail2ban section.
func TestFingerprintSeesOverrides(t *testing.T) {
	root := repoRoot(t)
	c := content{hubDir: filepath.Join(root, "packaging", "hub"), patternDir: filepath.Join(root, "packaging", "patterns")}
	data := t.TempDir()
	sum := func(yamlText string) string {
		t.Helper()
		cfg, err := config.Parse("moat.yaml", []byte(yamlText))
		must(t, err)
		cfg.Hub.Data = data
		fp, err := fingerprint(cfg, c)
		must(t, err)
		return fp
	}
	base := sum("scenarios:\n  - name: moat/ssh-bf\n    capacity: 2\n")
	for _, tc := range []struct {
		yaml    string
		differs bool
	}{
		{"scenarios:\n  - name: moat/ssh-bf\n    capacity: 2\n", false},
		{"scenarios:\n  - name: moat/ssh-bf\n    capacity: 3\n", true},
		{"scenarios:\n  - name: moat/ssh-*\n    capacity: 2\n", true},
		{"scenarios:\n  - name: moat/ssh-bf\n    capacity: 2\n    simulate: false\n", true},
		{"scenarios: []\n", true},
	} {
		if got := sum(tc.yaml); (got != base) != tc.differs {
			t.Errorf("%q: fingerprint changed %v, want %v", tc.yaml, got != base, tc.differs)
		}
	}
}

// moat status says how much of detection only simulates; all of it is
// the global simulation mode.
func TestStatusShowsSimulation(t *testing.T) {
	for _, tc := range []struct {
		simulated int64
		scenarios int
		want      string
	}{
		{0, 9, "off"},
		{2, 9, "2 of 9 scenarios"},
		{9, 9, "all 9 scenarios (nothing is enforced)"},
	} {
		st := api.Status{Scenarios: make([]string, tc.scenarios), Counters: map[string]int64{"scenarios_simulated": tc.simulated}}
		var b strings.Builder
		must(t, writeStatus(&b, st, time.Now()))
		found := false
		for _, line := range strings.Split(b.String(), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "simulation" {
				found = true
				if got := strings.Join(f[1:], " "); got != tc.want {
					t.Errorf("%d of %d simulated: status says %q, want %q", tc.simulated, tc.scenarios, got, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("no simulation row in\n%s", b.String())
		}
	}
}

// moat config check accepts an override that matches nothing, with a
// warning naming it, and refuses a bad value at its line.
func TestConfigCheckScenarioOverrides(t *testing.T) {
	path := configWithContent(t, "scenarios:\n  - name: crowdsecurity/ssh-bf\n    capacity: 3\n")
	code, _, errOut := runMoat(t, "", "config", "check", "--config", path)
	want := path + `:2: scenario override "crowdsecurity/ssh-bf" matches no loaded scenario`
	if code != exitOK || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q: want 0 and the warning %q", code, errOut, want)
	}
	// A capacity a trigger cannot have is an error at the override's line.
	path = configWithContent(t, "scenarios:\n  - name: moat/http-bad-user-agent\n    capacity: 3\n")
	code, _, errOut = runMoat(t, "", "config", "check", "--config", path)
	want = path + ":3: scenario moat/http-bad-user-agent: override: trigger must have capacity 0"
	if code != exitUsage || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q: want %d and %q", code, errOut, exitUsage, want)
	}
}
