package hub

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/packaging"
)

// FuzzSelectCollection resolves an attacker-written collection in a hub
// holding the shipped items. An error leaves no selection; a selection
// holds each file once, only files of the hub, each under the kind it was
// indexed as, and never anything outside the hub directory.
func FuzzSelectCollection(f *testing.F) {
	testutil.SeedFiles(f, packaging.Files, "hub/collections")
	f.Add([]byte("collections:\n  - moat/fuzz\n  - moat/sshd\n"))
	f.Add([]byte("parsers:\n  - ../../../../etc/passwd\n"))
	f.Add([]byte("scenarios:\n  - moat/http-probing\nunknown: 1\n"))
	f.Add([]byte("parsers: moat/sshd-logs\n"))
	root := f.TempDir()
	if err := os.CopyFS(root, packaging.Files); err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join(root, "hub")
	coll := filepath.Join(dir, "collections", "moat", "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(coll, data, 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		sel, err := h.Select([]string{"moat/fuzz"})
		if err != nil {
			if sel != nil {
				t.Fatalf("error %v with a selection", err)
			}
			if !errors.Is(err, ErrNotFound) && !strings.Contains(err.Error(), coll) {
				t.Fatalf("error %q neither ErrNotFound nor naming %s", err, coll)
			}
			return
		}
		seen := map[string]bool{}
		check := func(kind, path, stage string) {
			if seen[path] {
				t.Fatalf("%s selected twice", path)
			}
			seen[path] = true
			if rel, err := filepath.Rel(dir, path); err != nil || strings.HasPrefix(rel, "..") {
				t.Fatalf("%s is outside the hub %s", path, dir)
			}
			for _, it := range h.Items(kind) {
				if it.Path == path && it.Stage == stage {
					return
				}
			}
			t.Fatalf("%s is not a %s of the hub", path, kind)
		}
		for _, p := range sel.Parsers {
			check(Parsers, p.Path, p.Stage)
		}
		for _, p := range sel.Postoverflows {
			check(Postoverflows, p.Path, p.Stage)
		}
		for _, p := range sel.Scenarios {
			check(Scenarios, p, "")
		}
	})
}
