package hub

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

func sharedHub(t *testing.T) string {
	t.Helper()
	return testutil.Shared(t, "crowdsec-hub/hub")
}

func TestSelectCollection(t *testing.T) {
	h, err := Open(sharedHub(t))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := h.Select([]string{"crowdsecurity/sshd"})
	if err != nil {
		t.Fatal(err)
	}
	var parsers []string
	for _, p := range sel.Parsers {
		parsers = append(parsers, filepath.Base(p.Path)+"@"+p.Stage)
	}
	if !slices.Contains(parsers, "sshd-logs.yaml@s01-parse") {
		t.Errorf("sshd collection parsers = %v, want sshd-logs in s01-parse", parsers)
	}
	var scen []string
	for _, s := range sel.Scenarios {
		scen = append(scen, filepath.Base(s))
	}
	if !slices.Contains(scen, "ssh-bf.yaml") {
		t.Errorf("sshd collection scenarios = %v, want ssh-bf", scen)
	}
	// linux pulls sshd and syslog-logs through nested collections.
	sel, err = h.Select([]string{"crowdsecurity/linux"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range sel.Parsers {
		if b := filepath.Base(p.Path); b == "syslog-logs.yaml" || b == "sshd-logs.yaml" || b == "dateparse-enrich.yaml" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("linux collection: found %d of syslog-logs, sshd-logs, dateparse-enrich", n)
	}
	if _, err := h.Select([]string{"nobody/nothing"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown item: err = %v, want ErrNotFound", err)
	}
	all, err := h.Select(nil)
	if err != nil || len(all.Scenarios) < 100 || len(all.Parsers) < 100 {
		t.Errorf("empty selection: %d parsers, %d scenarios, %v", len(all.Parsers), len(all.Scenarios), err)
	}
}

func TestRefPath(t *testing.T) {
	h, err := Open(sharedHub(t))
	if err != nil {
		t.Fatal(err)
	}
	it, err := h.Ref(Parsers, "./parsers/s01-parse/crowdsecurity/nginx-logs.yaml")
	if err != nil || it.Stage != "s01-parse" || it.Name != "crowdsecurity/nginx-logs" {
		t.Fatalf("Ref = %+v, %v", it, err)
	}
}

// A collection with a typo reads as every moat loader's error: the file,
// the line and "unknown key".
func TestCollectionErrorWording(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, Collections, "me", "typo.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("parsers: []\nscenario: [me/x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Select([]string{"me/typo"})
	want := "load collection me/typo: " + path + `:2: unknown key "scenario"`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// A collection's contexts are selected with it; one the hub lacks is
// recorded, not an error (hubs installed before moat loaded contexts lack
// them).
func TestSelectContexts(t *testing.T) {
	h, err := Open(sharedHub(t))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := h.Select([]string{"crowdsecurity/sshd"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Contexts) != 1 || filepath.Base(sel.Contexts[0]) != "bf_base.yaml" || len(sel.MissingContexts) != 0 {
		t.Errorf("sshd contexts = %v, missing %v; want bf_base", sel.Contexts, sel.MissingContexts)
	}
	all, err := h.Select(nil)
	if err != nil || len(all.Contexts) < 5 {
		t.Errorf("empty selection: %d contexts, %v", len(all.Contexts), err)
	}

	dir := t.TempDir()
	for p, text := range map[string]string{
		"collections/me/c.yaml": "scenarios: [me/s]\ncontexts: [me/ctx, me/gone]\n",
		"scenarios/me/s.yaml":   "type: trigger\nname: me/s\n",
		"contexts/me/ctx.yml":   "context:\n  user: [evt.Meta.target_user]\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sel, err = h.Select([]string{"me/c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Contexts) != 1 || !slices.Equal(sel.MissingContexts, []string{"me/gone"}) {
		t.Errorf("contexts = %v, missing %v; want ctx.yml, missing me/gone", sel.Contexts, sel.MissingContexts)
	}
	if it, err := h.Ref(Contexts, "me/ctx"); err != nil || it.Kind != Contexts {
		t.Errorf("Ref(contexts, me/ctx) = %+v, %v", it, err)
	}
}
