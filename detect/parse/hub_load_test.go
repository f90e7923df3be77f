package parse

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// sharedHub is the hub snapshot beside the checkout.
func sharedHub(t testing.TB) string {
	t.Helper()
	testutil.Shared(t, "crowdsec-hub/hub")
	return testutil.Shared(t, "crowdsec-hub")
}

// unsupported lists hub files addressing engines moat does not have.
var unsupported = map[string]string{
	"appsec-logs.yaml": "evt.Appsec: moat has no web application firewall engine",
}

// Every parser and postoverflow of the hub loads unchanged, one by one.
func TestLoadEveryHubParser(t *testing.T) {
	root := sharedHub(t)
	var bad []string
	total := 0
	for _, kind := range []string{"parsers", "postoverflows"} {
		files, _ := filepath.Glob(filepath.Join(root, "hub", kind, "*", "*", "*.yaml"))
		for _, f := range files {
			total++
			stage := filepath.Base(filepath.Dir(filepath.Dir(f)))
			_, err := Load([]File{{Path: f, Stage: stage}}, Options{
				PatternDir:   filepath.Join(root, "patterns"),
				DataDir:      filepath.Join(root, "data"),
				Postoverflow: kind == "postoverflows",
			})
			_, known := unsupported[filepath.Base(f)]
			switch {
			case err != nil && !known:
				bad = append(bad, err.Error())
			case err == nil && known:
				bad = append(bad, f+" loads but is listed as unsupported")
			}
		}
	}
	t.Logf("%d/%d hub parser files load", total-len(bad), total)
	if len(bad) > 0 {
		t.Errorf("failed to load:\n%s", strings.Join(bad, "\n"))
	}
}
