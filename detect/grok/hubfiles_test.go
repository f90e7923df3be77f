package grok

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/testutil"
)

// sharedHub is the hub snapshot beside the checkout.
func sharedHub(tb testing.TB) string {
	tb.Helper()
	return filepath.Dir(testutil.Shared(tb, "crowdsec-hub/hub"))
}

// compileParserFile compiles the groks of one hub parser file into g as
// detect/parse does: a node's pattern_syntax is added before its grok,
// its children's after.
func compileParserFile(g *Library, path string) ([]*Pattern, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*Pattern
	var walk func(n map[string]any) error
	walk = func(n map[string]any) error {
		if ps, ok := n["pattern_syntax"].(map[string]any); ok {
			for k, v := range ps {
				g.Add(k, fmt.Sprint(v))
			}
		}
		if gk, ok := n["grok"].(map[string]any); ok {
			src, _ := gk["pattern"].(string)
			if name, _ := gk["name"].(string); src == "" && name != "" {
				src = "%{" + name + "}"
			}
			if src != "" {
				c, err := g.Compile(src)
				if err != nil {
					return err
				}
				out = append(out, c)
			}
		}
		children, _ := n["nodes"].([]any)
		for _, c := range children {
			if m, ok := c.(map[string]any); ok {
				if err := walk(m); err != nil {
					return err
				}
			}
		}
		return nil
	}
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := walk(doc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// compileParserDir compiles the groks of every parser file under
// root/hub/parsers into one library, in the order detect/parse loads them
// (by stage, then base name).
func compileParserDir(tb testing.TB, root string) []*Pattern {
	tb.Helper()
	paths, _ := filepath.Glob(filepath.Join(root, "hub", "parsers", "*", "*", "*.yaml"))
	if len(paths) == 0 {
		tb.Fatalf("no parsers under %s", root)
	}
	key := func(p string) string { return filepath.Base(filepath.Dir(filepath.Dir(p))) + "/" + filepath.Base(p) }
	sort.SliceStable(paths, func(i, j int) bool { return key(paths[i]) < key(paths[j]) })
	g := New(Options{})
	if err := g.LoadDir(filepath.Join(root, "patterns")); err != nil {
		tb.Fatal(err)
	}
	var out []*Pattern
	for _, p := range paths {
		ps, err := compileParserFile(g, p)
		if err != nil {
			tb.Fatalf("compile %s: %v", p, err)
		}
		out = append(out, ps...)
	}
	return out
}

// syslogSeeds are syslog lines of every shape the syslog fast path tells
// apart, shared with detect/parse's pipeline fuzzing.
func syslogSeeds(tb testing.TB) []string {
	tb.Helper()
	return readSeeds(tb, filepath.Join("testdata", "syslog-seeds.txt"))
}

// readSeeds reads one Go-quoted string per line.
func readSeeds(tb testing.TB, path string) []string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		s, err := strconv.Unquote(l)
		if err != nil {
			tb.Fatalf("%s: %q: %v", path, l, err)
		}
		out = append(out, s)
	}
	return out
}
