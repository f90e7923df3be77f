package yamlerr

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

func decodeStrict(data string) error {
	var v struct {
		Name  string `yaml:"name"`
		Count int    `yaml:"count"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"name: a\ncolour: blue\n", `f.yaml:2: unknown key "colour"`},
		{"name: a\ncount: many\n", "f.yaml:2: cannot unmarshal !!str `many` into int"},
		{"name: a\ncount: x\nbad: 1\n", "f.yaml:2: cannot unmarshal !!str `x` into int"},
		{"name: [a\n", "f.yaml:1: did not find expected ',' or ']'"},
		{"\tname: a\n", "f.yaml: found character that cannot start any token"},
	} {
		err := Wrap("f.yaml", decodeStrict(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Wrap(%q) = %v, want %s", tc.in, err, tc.want)
		}
		var ye *Error
		if !errors.As(err, &ye) {
			t.Errorf("Wrap(%q) is %T, want *Error", tc.in, err)
		}
	}
	other := errors.New("disk on fire")
	if got := Wrap("f.yaml", other); got != other {
		t.Errorf("a non-yaml error was rewritten: %v", got)
	}
	if Wrap("f.yaml", nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
}

// An error tagged with a key path, wrapped on its way up through nested
// specs, is found at the line of its innermost key.
func TestLineFor(t *testing.T) {
	const doc = "# comment\nname: a\nfilter: x ==\nnodes:\n  - grok:\n      pattern: '%{'\n  - filter: y\n    statics:\n      - meta: a\n        expression: z(\n"
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	bad := errors.New("bad")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{AtKey(bad, "filter"), 3},
		{AtKey(fmt.Errorf("node 0: %w", AtKey(fmt.Errorf("grok: %w", AtKey(bad, "pattern")), "grok")), "nodes", 0), 6},
		{AtKey(AtKey(AtKey(bad, "expression"), "statics", 0), "nodes", 1), 10},
		{AtKey(bad, "nodes", 1, "whitelist"), 7}, // the deepest key there is
		{AtKey(bad, "nosuchkey"), 2},             // the mapping's first line
		{bad, 99},                                // no path: the default
		{fmt.Errorf("wrapped: %w", AtKey(bad, "name")), 2},
	} {
		if got := LineFor(&n, tc.err, 99); got != tc.want {
			t.Errorf("LineFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if AtKey(nil, "x") != nil {
		t.Error("AtKey(nil) != nil")
	}
}

// ReadFile reads a file up to its limit and refuses one byte more, naming
// the file and the limit and quoting none of it.
func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		size    int
		tooBig  bool
		message string
	}{
		{1 << 20, false, ""},
		{1<<20 + 1, true, "big.yaml: larger than 1 MiB, the limit for this kind of file"},
	} {
		path := filepath.Join(dir, "big.yaml")
		if err := os.WriteFile(path, bytes.Repeat([]byte("#"), tc.size), 0o644); err != nil {
			t.Fatal(err)
		}
		data, err := ReadFile(path, 1<<20)
		if tc.tooBig {
			if !errors.Is(err, ErrTooLarge) || data != nil || err.Error() != filepath.Join(dir, tc.message) {
				t.Errorf("%d bytes: %d read, err %v; want ErrTooLarge: %s", tc.size, len(data), err, tc.message)
			}
			continue
		}
		if err != nil || len(data) != tc.size {
			t.Errorf("%d bytes: %d read, err %v", tc.size, len(data), err)
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "none.yaml"), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
