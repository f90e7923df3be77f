package scenario

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// A scenario that does not load is reported at the line of the key at
// fault, not where its document starts. want is the first line of the
// error up to the compiler's own message.
func TestLoadErrorLines(t *testing.T) {
	want := map[string]string{
		"filter.yaml":     "testdata/bad/filter.yaml:5: scenario test/bad-filter: filter: ",
		"leakspeed.yaml":  `testdata/bad/leakspeed.yaml:7: scenario test/bad-leakspeed: bad leakspeed "10 parsecs": `,
		"second-doc.yaml": "testdata/bad/second-doc.yaml:13: scenario test/bad-groupby: groupby: ",
		"bayesian.yaml":   "testdata/bad/bayesian.yaml:16: scenario test/bad-bayes: bayesian condition 1: ",
		"type.yaml":       `testdata/bad/type.yaml:4: scenario test/bad-type: unknown type "leakyy"`,
		"scope.yaml":      "testdata/bad/scope.yaml:6: scenario test/bad-scope: scope Country needs an expression",
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d files in testdata/bad, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load([]string{f}, Options{})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load = %v, want a *LoadError", err)
			}
			first, _, _ := strings.Cut(err.Error(), "\n")
			if w := want[filepath.Base(f)]; !strings.HasPrefix(first, w) {
				t.Fatalf("error\n got: %s\nwant: %s...", first, w)
			}
		})
	}
}
