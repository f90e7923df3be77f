package hub

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOverlays: an overlay adds its items to the base and replaces the
// base's items of the same kind and name; a missing overlay adds nothing.
func TestOverlays(t *testing.T) {
	base, over := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(base, "scenarios/moat/a.yaml"), "name: moat/a\n")
	writeFile(t, filepath.Join(base, "scenarios/moat/b.yaml"), "name: moat/b\n")
	writeFile(t, filepath.Join(base, "parsers/s01-parse/moat/p.yaml"), "name: moat/p\n")
	writeFile(t, filepath.Join(over, "scenarios/moat/b.yaml"), "name: moat/b\n")
	writeFile(t, filepath.Join(over, "scenarios/x/c.yaml"), "name: x/c\n")

	h, err := Open(base, over, filepath.Join(over, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"moat/a": base, "moat/b": over, "x/c": over}
	got := h.Items(Scenarios)
	if len(got) != len(want) {
		t.Fatalf("scenarios = %+v, want %v", got, want)
	}
	for _, it := range got {
		if want[it.Name] != it.Layer || filepath.Dir(filepath.Dir(filepath.Dir(it.Path))) != it.Layer {
			t.Errorf("%s from %s (%s), want layer %s", it.Name, it.Layer, it.Path, want[it.Name])
		}
	}
	if p := h.Items(Parsers); len(p) != 1 || p[0].Layer != base {
		t.Errorf("parsers = %+v, want moat/p from the base", p)
	}
	sh := h.Shadowed()
	if len(sh) != 1 || sh[0].Name != "moat/b" || sh[0].Layer != base {
		t.Errorf("shadowed = %+v, want the base's moat/b", sh)
	}
	sel, err := h.Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sel.Scenarios {
		if f == filepath.Join(base, "scenarios/moat/b.yaml") {
			t.Errorf("selection loads the shadowed %s", f)
		}
	}
	if len(sel.Scenarios) != 3 {
		t.Errorf("selection scenarios = %v, want 3", sel.Scenarios)
	}
}

// TestOverlaysAllEmpty: with nothing in any layer Open fails, naming them.
func TestOverlaysAllEmpty(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := Open(a, b); err == nil {
		t.Fatal("Open of two empty layers succeeded")
	}
}

// TestOpenYML: the hub names a few files .yml; they load like .yaml.
func TestOpenYML(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "parsers/s01-parse/x/a.yml"), "name: x/a\n")
	writeFile(t, filepath.Join(dir, "collections/x/c.yml"), "name: x/c\nparsers:\n  - x/a\n")
	h, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := h.Select([]string{"x/c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Parsers) != 1 || sel.Parsers[0].Path != filepath.Join(dir, "parsers/s01-parse/x/a.yml") || sel.Parsers[0].Stage != "s01-parse" {
		t.Errorf("selection = %+v", sel.Parsers)
	}
	if it, err := h.Ref(Parsers, "./parsers/s01-parse/x/a.yml"); err != nil || it.Name != "x/a" {
		t.Errorf("Ref = %+v, %v", it, err)
	}
}
