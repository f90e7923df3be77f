package scenario

import (
	"errors"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
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
	testutil.ErrorLines(t, "testdata/bad/*.yaml", want, func(t *testing.T, f string) error {
		_, err := Load([]string{f}, Options{})
		var le *LoadError
		if !errors.As(err, &le) {
			t.Fatalf("Load = %v, want a *LoadError", err)
		}
		return err
	})
}
