package hubstore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// TestScanAgreesWithIndex: a checkout read without its .index.json offers
// the same items, at the same paths, with the same dependencies, as its
// index describes.
func TestScanAgreesWithIndex(t *testing.T) {
	hubDir := testutil.Shared(t, "crowdsec-hub/hub")
	indexed := openSrc(t, hubDir)
	if !indexed.Indexed {
		t.Fatalf("%s has no .index.json", hubDir)
	}
	// The same checkout without its index: the kind directories linked
	// into a directory of their own.
	bare := t.TempDir()
	for _, k := range Kinds {
		if err := os.Symlink(filepath.Join(hubDir, k), filepath.Join(bare, k)); err != nil {
			t.Fatal(err)
		}
	}
	scanned := openSrc(t, bare)
	if scanned.Indexed {
		t.Fatal("read the index of a directory without one")
	}
	byRef := map[string]Item{}
	for _, it := range scanned.Items() {
		byRef[it.Ref()] = it
	}
	for _, want := range indexed.Items() {
		got, ok := byRef[want.Ref()]
		if !ok {
			t.Errorf("%s: not found by the scan", want.Ref())
			continue
		}
		delete(byRef, want.Ref())
		if got.Path != want.Path || got.SHA256 != want.SHA256 || got.Stage != want.Stage {
			t.Errorf("%s: scanned %s %s %s, indexed %s %s %s", want.Ref(), got.Path, got.Stage, got.SHA256, want.Path, want.Stage, want.SHA256)
		}
		gd, wd := slices.Clone(got.Deps), slices.Clone(want.Deps)
		slices.Sort(gd)
		slices.Sort(wd)
		if !slices.Equal(gd, wd) {
			t.Errorf("%s: scanned deps %v, indexed %v", want.Ref(), gd, wd)
		}
	}
	for ref := range byRef {
		t.Errorf("%s: scanned, not in the index", ref)
	}
	if len(indexed.Items()) < 500 {
		t.Errorf("only %d items in the checkout", len(indexed.Items()))
	}
}
