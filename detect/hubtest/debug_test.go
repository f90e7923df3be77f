package hubtest

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestDebugOne runs the tests named in MOAT_HUBTEST (comma-separated) and
// prints their outcome; it does nothing otherwise.
func TestDebugOne(t *testing.T) {
	names := os.Getenv("MOAT_HUBTEST")
	if names == "" {
		t.Skip("set MOAT_HUBTEST=name[,name] to run single hub tests")
	}
	opts := hubOptions(sharedDir(t))
	opts.Names = strings.Split(names, ",")
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("%s pass=%v %s", r.Name, r.Pass, r.Failure)
	}
}
