package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/exprenv"
)

// TestExplainExpressions: moat explain --expressions lists the scenario
// expression whose pattern comes from the event, and not the one whose
// pattern a load folds to a constant.
func TestExplainExpressions(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	hub := filepath.Join(dir, "hub")
	copyTree(t, filepath.Join(root, "packaging/hub"), hub)
	const (
		folded  = `evt.Meta.log_type == 'ssh_failed-auth' && Upper(evt.Meta.target_user) matches Upper('^ro+t$')`
		dynamic = `evt.Meta.log_type == 'ssh_failed-auth' && evt.Meta.target_user matches evt.Meta.source_ip`
	)
	sc := "type: leaky\nname: moat/folded\ndescription: d\nfilter: \"" + folded + "\"\ncapacity: 5\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\n" +
		"---\ntype: leaky\nname: moat/dynamic\ndescription: d\nfilter: \"" + dynamic + "\"\ncapacity: 5\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\n"
	must(t, os.WriteFile(filepath.Join(hub, "scenarios/moat/probe.yaml"), []byte(sc), 0o644))
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\nhub:\n  dir: "+hub+"\n  patterns: "+root+"/packaging/patterns\n"), 0o644))

	code, out, errOut := runMoat(t, "", "explain", "--expressions", "-c", cfg, "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []exprenv.Dynamic
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON list: %v\n%s", err, out)
	}
	if len(got) != 1 || got[0].Expr != dynamic || got[0].Reason == "" {
		t.Fatalf("listed %+v, want only %q with a reason", got, dynamic)
	}
	code, out, _ = runMoat(t, "", "explain", "--expressions", "-c", cfg, "-o", "table")
	if code != exitOK || !strings.Contains(out, "PER-EVENT WORK") || !strings.Contains(out, "evt.Meta.source_ip") {
		t.Errorf("table:\n%s", out)
	}
}
