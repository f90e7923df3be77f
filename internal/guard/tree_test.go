package guard

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goFile is one parsed Go file of the tree, its path relative to the
// module root with forward slashes.
type goFile struct {
	rel  string
	fset *token.FileSet
	file *ast.File
}

func (f goFile) isTest() bool { return strings.HasSuffix(f.rel, "_test.go") }

// generated reports whether the file carries Go's "Code generated ... DO NOT
// EDIT." line, or is bpf2go output: nobody edits those by hand, so the
// rules on hand-written code do not bind them.
func (f goFile) generated() bool {
	return strings.HasSuffix(f.rel, "_bpfel.go") || ast.IsGenerated(f.file)
}

// moduleRoot is the directory holding go.mod, above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the guard package")
		}
		dir = parent
	}
}

// goFiles parses every Go file of the module, tests included, whatever
// their build tags: testdata, hidden directories and directories the go
// tool ignores (leading _ or .) are left out, as the go tool leaves them.
func goFiles(t *testing.T) []goFile {
	t.Helper()
	root := moduleRoot(t)
	var files []goFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files = append(files, goFile{rel: filepath.ToSlash(rel), fset: fset, file: f})
		return nil
	})
	if err != nil {
		t.Fatalf("reading the tree: %v", err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d Go files under %s: is this the moat tree?", len(files), root)
	}
	return files
}
