package hubstore

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtractBundle: whatever a bundle holds, extraction writes nothing
// outside its directory and leaves no link behind.
func FuzzExtractBundle(f *testing.F) {
	dir := f.TempDir()
	for _, files := range []map[string]string{
		{"hub/scenarios/a/x.yaml": "name: a/x\n"},
		{"../escape": "x"},
		{"/abs": "x"},
		{"a/../../b": "x"},
	} {
		p := filepath.Join(dir, "seed.tgz")
		writeBundle(f, p, files)
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		bundle := filepath.Join(root, "b.tgz")
		out := filepath.Join(root, "out")
		if err := os.WriteFile(bundle, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = extractBundle(bundle, out)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == root || p == bundle {
				return nil
			}
			if p != out && !strings.HasPrefix(p, out+string(filepath.Separator)) {
				t.Errorf("extraction wrote %s outside %s", p, out)
			}
			if d.Type()&fs.ModeSymlink != 0 {
				t.Errorf("extraction made a link %s", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
