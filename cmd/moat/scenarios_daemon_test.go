package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/testutil"
)

// A reload applies changed scenario overrides to the running daemon: a
// lowered capacity bans sooner and for the override's duration, a name
// that matches nothing is logged, and global simulation shows in moat
// status and keeps the next ban out of the kernel.
func TestReloadAppliesScenarioOverrides(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	h := newE2EHost(t, ns, nil)
	base, err := os.ReadFile(h.cfgPath)
	must(t, err)
	d := startDaemon(t, h)

	status := func() api.Status {
		t.Helper()
		code, out, errOut := runMoat(t, "", "status", "-o", "json", "--config", h.cfgPath)
		if code != exitOK {
			t.Fatalf("moat status: exit %d: %s", code, errOut)
		}
		var st api.Status
		must(t, json.Unmarshal([]byte(out), &st))
		return st
	}
	if n := status().Counters["scenarios_simulated"]; n != 0 {
		t.Fatalf("%d scenarios simulated before any override", n)
	}

	// Three failures stay under the shipped ssh-bf's capacity of 5.
	h.appendLines(t, repeatLine("Failed password for root from 198.18.6.1 port 2222 ssh2", 3)...)
	waitFor(t, 10*time.Second, "the first three lines to be read", func() bool {
		return metricValue(t, ns, "moat_engine_lines_total") >= 3
	})

	must(t, os.WriteFile(h.cfgPath, append(base, []byte(`scenarios:
  - name: moat/ssh-bf
    capacity: 2
    leakspeed: 10m
    duration: 1h
  - name: crowdsecurity/ssh-bf
    simulate: true
`)...), 0o644))
	d.hup(t, 1)
	out := d.stderr.String()
	if !strings.Contains(out, `engine=replaced`) {
		t.Fatalf("changed overrides did not replace the engine:\n%s", out)
	}
	if !strings.Contains(out, `scenario override \"crowdsecurity/ssh-bf\" matches no loaded scenario`) {
		t.Errorf("the override matching nothing was not logged:\n%s", out)
	}
	if strings.Contains(nftSet(t, ns, "ban4"), "198.18.6.1") {
		t.Fatal("three failures banned before the override")
	}
	h.appendLines(t, repeatLine("Failed password for root from 198.18.6.2 port 2223 ssh2", 3)...)
	waitFor(t, 10*time.Second, "the ban of three failures", func() bool {
		return strings.Contains(nftSet(t, ns, "ban4"), "198.18.6.2")
	})
	// The kernel timeout is the override's hour (less the moments the
	// ban took to get there), not the profiles' 4h.
	if m := regexp.MustCompile(`198\.18\.6\.2 timeout (\S+)`).FindStringSubmatch(nftSet(t, ns, "ban4")); m == nil || !(m[1] == "1h" || strings.HasPrefix(m[1], "59m")) {
		t.Errorf("ban timeout %v, want 1h:\n%s", m, nftSet(t, ns, "ban4"))
	}

	// Global simulation: every scenario simulates, bans are stored only.
	must(t, os.WriteFile(h.cfgPath, append(base, []byte(`scenarios:
  - name: "*"
    simulate: true
`)...), 0o644))
	d.hup(t, 2)
	st := status()
	if n := st.Counters["scenarios_simulated"]; n == 0 || int(n) != len(st.Scenarios) {
		t.Fatalf("%d of %d scenarios simulated after a global simulate", n, len(st.Scenarios))
	}
	h.appendLines(t, repeatLine("Failed password for root from 198.18.6.3 port 2224 ssh2", 8)...)
	waitFor(t, 10*time.Second, "the simulated alert", func() bool {
		code, out, _ := runMoat(t, "", "alerts", "list", "-o", "json", "--config", h.cfgPath)
		var alerts []api.Alert
		if code != exitOK || json.Unmarshal([]byte(out), &alerts) != nil {
			return false
		}
		for _, a := range alerts {
			if a.Value == "198.18.6.3" {
				if !a.Simulated {
					t.Fatalf("alert %+v is not simulated", a)
				}
				return true
			}
		}
		return false
	})
	if strings.Contains(nftSet(t, ns, "ban4"), "198.18.6.3") {
		t.Error("a simulated scenario banned in the kernel")
	}
}
