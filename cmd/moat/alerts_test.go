package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// alerts list shows, for each alert, the decisions it produced; an alert
// that produced none (simulated, allowlisted) shows "-".
func TestAlertsListDecisions(t *testing.T) {
	cfg, svc := adminDaemon(t)
	ctx := context.Background()
	banned := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: "Ip", Value: "198.18.5.5", Source: netip.MustParsePrefix("198.18.5.5/32"), Remediation: true, EventsCount: 6}
	ds, err := svc.HandleAlert(ctx, banned)
	if err != nil || len(ds) != 1 {
		t.Fatalf("HandleAlert = %v, %v; want one decision", ds, err)
	}
	// Allowlisted in adminDaemon: an alert, no decision.
	spared := model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: "Ip", Value: "198.18.250.9", Source: netip.MustParsePrefix("198.18.250.9/32"), Remediation: true, EventsCount: 6}
	if ds, err := svc.HandleAlert(ctx, spared); err != nil || len(ds) != 0 {
		t.Fatalf("HandleAlert on an allowlisted source = %v, %v; want no decision", ds, err)
	}
	want := map[string]string{"198.18.5.5": strconv.FormatInt(ds[0].ID, 10), "198.18.250.9": "-"}

	code, out, errOut := runMoat(t, "", "alerts", "list", "-c", cfg, "-o", "table")
	if code != exitOK {
		t.Fatalf("alerts list: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	col := strings.Index(lines[0], "DECISIONS")
	if len(lines) != 3 || col < 0 {
		t.Fatalf("want a header and two alerts:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l[col:])
		var value string
		for v := range want {
			if strings.Contains(l, "Ip:"+v+" ") {
				value = v
			}
		}
		if value == "" || len(f) == 0 || f[0] != want[value] {
			t.Errorf("row %q: DECISIONS %v, want %q", l, f, want[value])
		}
	}

	code, out, _ = runMoat(t, "", "alerts", "list", "-c", cfg, "-o", "json")
	var alerts []api.Alert
	if code != exitOK || json.Unmarshal([]byte(out), &alerts) != nil || len(alerts) != 2 {
		t.Fatalf("alerts list -o json: %d %s", code, out)
	}
	for _, a := range alerts {
		got := "-"
		if len(a.Decisions) > 0 {
			got = strconv.FormatInt(a.Decisions[0], 10)
		}
		if len(a.Decisions) > 1 || got != want[a.Value] {
			t.Errorf("alert on %s: decisions %v, want %s", a.Value, a.Decisions, want[a.Value])
		}
	}
}

func TestDecisionIDs(t *testing.T) {
	for _, tc := range []struct {
		ids  []int64
		want string
	}{
		{nil, "-"},
		{[]int64{7}, "7"},
		{[]int64{7, 8, 9}, "7,8,9"},
		{[]int64{7, 8, 9, 10, 11}, "7,8,9 +2"},
	} {
		if got := decisionIDs(tc.ids); got != tc.want {
			t.Errorf("decisionIDs(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
}

// alerts inspect shows the context stored with an alert: one value a
// line, escaped in a table, exact in JSON.
func TestAlertsInspectContext(t *testing.T) {
	cfg, svc := adminDaemon(t)
	al := model.Alert{Scenario: "moat/ssh-bf", Scope: "Ip", Value: "198.18.5.6", Source: netip.MustParsePrefix("198.18.5.6/32"), Remediation: true, EventsCount: 6,
		Context: map[string][]string{"target_user": {"root", "ad\x1b[31mmin"}, "target_uri": {"/wp-login.php"}}}
	if _, err := svc.HandleAlert(context.Background(), al); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMoat(t, "", "alerts", "list", "-c", cfg, "-o", "raw")
	id := strings.TrimSpace(out)
	if code != exitOK || id == "" {
		t.Fatalf("alerts list: %d %q %s", code, out, errOut)
	}
	code, out, errOut = runMoat(t, "", "alerts", "inspect", id, "-c", cfg, "-o", "table")
	want := "  Context:\n    target_uri:\n      /wp-login.php\n    target_user:\n      root\n      ad\\x1b[31mmin\n"
	if code != exitOK || !strings.Contains(out, want) {
		t.Fatalf("alerts inspect: %d %s\n%s\nwant the context:\n%s", code, errOut, out, want)
	}
	code, out, _ = runMoat(t, "", "alerts", "inspect", id, "-c", cfg, "-o", "json")
	var got api.Alert
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Context["target_user"][1] != "ad\x1b[31mmin" || len(got.Context) != 2 {
		t.Fatalf("alerts inspect -o json: %d %s", code, out)
	}
}
