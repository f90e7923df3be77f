package guard

import (
	"path"
	"strconv"
	"strings"
	"testing"
)

// unixHome is the one package that imports golang.org/x/sys/unix: raw
// system calls and their errnos stay behind one door, where they can be
// wrapped and audited, as cilium/ebpf keeps them behind internal/unix.
const unixHome = "internal/unix/"

// testSupport are the packages that hold test helpers: only _test.go files
// may import them, and in exchange they may run commands (ip netns, nft
// list) as tests do.
var testSupport = map[string]bool{"internal/testutil/": true}

// benchDriver is the package behind cmd/moat-bench (make bench): measuring
// moat from outside is its job, so it runs moat, the test binaries of
// moat's benchmarks, the peers (crowdsec) and ip(8) as child processes,
// and reads their rusage. It ships in no package and moat never imports it.
var benchDriver = map[string]bool{"internal/bench/": true}

// commandSourceFile is the acquisition source whose job is to run the
// program an acquisition file names (source: command, as sshguard's
// LOGREADER): it alone of production code may import os/exec, by file,
// so the rest of detect/acquire still cannot.
const commandSourceFile = "detect/acquire/command.go"

// actionExecFile runs the commands an operator configures under actions:
// (an abuse report, a router ACL on each ban): starting that program is
// the feature, so it alone of enforce/ may import os/exec, by file.
const actionExecFile = "enforce/action/exec.go"

const modulePath = "github.com/moatsec/moat/"

// TestRestrictedImports: moat talks netlink, BPF and sdjournal itself, so
// no production code shells out (os/exec), which would make it depend on
// whatever nft or journalctl a host has; tests and packaging scripts may.
func TestRestrictedImports(t *testing.T) {
	for _, f := range goFiles(t) {
		for _, imp := range f.file.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatalf("%s: import %s: %v", f.rel, imp.Path.Value, err)
			}
			pos := f.fset.Position(imp.Pos())
			switch {
			case p == "golang.org/x/sys/unix" && !strings.HasPrefix(f.rel, unixHome):
				t.Errorf("%s:%d imports golang.org/x/sys/unix: use github.com/moatsec/moat/%s", f.rel, pos.Line, strings.TrimSuffix(unixHome, "/"))
			case p == "os/exec" && !f.isTest() && !strings.HasPrefix(f.rel, "packaging/") && !testSupport[dirOf(f.rel)] && !benchDriver[dirOf(f.rel)] && f.rel != commandSourceFile && f.rel != actionExecFile:
				t.Errorf("%s:%d imports os/exec outside a test and packaging/", f.rel, pos.Line)
			case strings.HasPrefix(p, modulePath) && testSupport[strings.TrimPrefix(p, modulePath)+"/"] && !f.isTest():
				t.Errorf("%s:%d imports %s, which only tests may import", f.rel, pos.Line, p)
			}
		}
	}
}

// dirOf is the directory of a file's relative path, with a trailing slash.
func dirOf(rel string) string { return path.Dir(rel) + "/" }
