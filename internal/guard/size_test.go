package guard

import (
	"go/ast"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// maxFuncLines is the longest a function may be: past it, a function
	// does several things that deserve names.
	maxFuncLines = 150
	// maxCmdFileLines bounds a file in cmd/moat, tests included: main
	// only wires, and a long file there is logic that belongs in a package.
	maxCmdFileLines = 300
)

// TestNoLongFunctions: no hand-written function, tests included, runs past
// maxFuncLines; generated code is exempt.
func TestNoLongFunctions(t *testing.T) {
	for _, f := range goFiles(t) {
		if f.generated() {
			continue
		}
		ast.Inspect(f.file, func(n ast.Node) bool {
			fd, ok := n.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				return true
			}
			start, end := f.fset.Position(fd.Pos()), f.fset.Position(fd.End())
			if lines := end.Line - start.Line + 1; lines > maxFuncLines {
				t.Errorf("%s:%d: %s is %d lines long, over %d", f.rel, start.Line, funcName(fd), lines, maxFuncLines)
			}
			return false
		})
	}
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
			continue
		case *ast.IndexExpr:
			typ = x.X
			continue
		case *ast.IndexListExpr:
			typ = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fd.Name.Name
		}
		return fd.Name.Name
	}
}

// TestCmdMoatFilesAreShort: no file in cmd/moat, tests included, runs past
// maxCmdFileLines.
func TestCmdMoatFilesAreShort(t *testing.T) {
	dir := filepath.Join(moduleRoot(t), "cmd", "moat")
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n > maxCmdFileLines {
			t.Errorf("cmd/moat/%s has %d lines, over %d: split it by concern", filepath.Base(name), n, maxCmdFileLines)
		}
	}
}
