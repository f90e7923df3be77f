package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce/api"
)

func TestDecisionsForeverAndFilters(t *testing.T) {
	cfg, _ := adminDaemon(t)
	code, out, errOut := runMoat(t, "", "decisions", "add", "--ip", "198.18.0.66", "--duration", "forever", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "ban 198.18.0.66 for forever (no expiry)") {
		t.Fatalf("add forever: %d %q %q", code, out, errOut)
	}
	code, out, _ = runMoat(t, "", "decisions", "add", "--ip", "198.18.0.67", "--duration", "7d", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "ban 198.18.0.67 for 7d (until ") {
		t.Fatalf("add 7d: %d %q", code, out)
	}
	code, out, _ = runMoat(t, "", "decisions", "list", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "forever") {
		t.Fatalf("list table: %d %s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "198.18.0.67") && strings.Contains(line, "forever") {
			t.Errorf("the 7d ban shows as forever: %q", line)
		}
	}
	code, out, _ = runMoat(t, "", "decisions", "list", "-c", cfg, "-o", "json", "--ip", "198.18.0.66")
	var ds []api.Decision
	if code != exitOK || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 1 || !ds[0].Forever || !ds[0].Until.IsZero() {
		t.Fatalf("list json: %d %s", code, out)
	}

	// Filters reach the daemon's query: every decision here is from the
	// CLI, made within the last hour.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--origin", "cli", "--since", "1h"}, "198.18.0.67\n198.18.0.66\n"},
		{[]string{"--origin", "local"}, ""},
		{[]string{"--origin", "cli", "--scenario", "ssh"}, ""},
		{[]string{"--since", "1d", "--limit", "1"}, "198.18.0.67\n"},
	} {
		args := append([]string{"decisions", "list", "-c", cfg, "-o", "raw"}, tc.args...)
		if code, out, errOut := runMoat(t, "", args...); code != exitOK || out != tc.want {
			t.Errorf("%v: %d %q %q, want %q", tc.args, code, out, errOut, tc.want)
		}
	}
	for _, args := range [][]string{
		{"decisions", "list", "--since", "soon", "-c", cfg},
		{"decisions", "list", "--since", "forever", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--duration", "forevermore", "-c", cfg},
		{"decisions", "add", "--ip", "198.18.0.1", "--duration", "99999d", "-c", cfg},
	} {
		if code, _, errOut := runMoat(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errOut, exitUsage)
		}
	}
}
