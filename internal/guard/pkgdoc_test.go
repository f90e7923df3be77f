package guard

import (
	"path"
	"sort"
	"strings"
	"testing"
)

// TestOnePackageDocPerPackage: every package says what it is for in one
// place. None, and godoc shows nothing; two, and they drift apart (only one
// of them is shown, in file order).
func TestOnePackageDocPerPackage(t *testing.T) {
	docs := map[string][]string{} // directory -> files with a package doc
	for _, f := range goFiles(t) {
		if f.isTest() || f.generated() {
			continue
		}
		dir := path.Dir(f.rel)
		if _, ok := docs[dir]; !ok {
			docs[dir] = nil
		}
		if f.file.Doc != nil {
			docs[dir] = append(docs[dir], path.Base(f.rel))
		}
	}
	dirs := make([]string, 0, len(docs))
	for d := range docs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		switch n := len(docs[d]); {
		case n == 0:
			t.Errorf("%s: no package doc comment (add one, in doc.go or the package's main file)", d)
		case n > 1:
			t.Errorf("%s: %d package doc comments, in %s: keep one", d, n, strings.Join(docs[d], ", "))
		}
	}
}
