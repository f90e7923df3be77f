package parse

import (
	"errors"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/internal/yamlerr"
)

// A parser whose grok, regexp or expression does not compile is reported
// at the line of the key at fault. want is the start of the error's first
// line, up to the compiler's own message.
func TestLoadErrorLines(t *testing.T) {
	want := map[string]string{
		"grok-pattern.yaml":      "testdata/bad/grok-pattern.yaml:10: parser test/bad-grok: node 1: grok: ",
		"regex.yaml":             "testdata/bad/regex.yaml:5: parser test/bad-regex: grok: ",
		"filter.yaml":            "testdata/bad/filter.yaml:3: parser test/bad-filter: filter: ",
		"static-expression.yaml": "testdata/bad/static-expression.yaml:7: parser test/bad-static: static expression: ",
		"whitelist.yaml":         "testdata/bad/whitelist.yaml:6: parser test/bad-whitelist: whitelist ip: ",
		"second-doc.yaml":        "testdata/bad/second-doc.yaml:12: parser test/bad-stash: stash value: ",
	}
	testutil.ErrorLines(t, "testdata/bad/*.yaml", want, func(t *testing.T, f string) error {
		_, err := Load([]File{{Path: f, Stage: "s01-parse"}}, Options{})
		var ye *yamlerr.Error
		if !errors.As(err, &ye) {
			t.Fatalf("Load = %v, want a *yamlerr.Error", err)
		}
		return err
	})
}
