package setup

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/moatsec/moat/packaging"
)

// debianHub is where Debian's crowdsec package puts its hub snapshot.
const debianHub = "/usr/share/crowdsec/hub"

// TestSetupCatalog: the catalog names content that exists, and services
// that share a log read it with one type (they share one reader).
func TestSetupCatalog(t *testing.T) {
	_, hubErr := os.Stat(debianHub)
	if hubErr != nil {
		t.Logf("NOTE: %s missing, the catalog's hub names are not checked against it (apt-get install crowdsec): %v", debianHub, hubErr)
	}
	names := map[string]bool{}
	typeOf := map[string]string{}
	for _, s := range Catalog() {
		if names[s.Name] {
			t.Errorf("%s twice", s.Name)
		}
		names[s.Name] = true
		if len(s.Packages)+len(s.Units)+len(s.Journal) == 0 {
			t.Errorf("%s: no evidence can find it", s.Name)
		}
		if s.Collection != "" {
			if _, err := fs.Stat(packaging.Files, "hub/collections/"+s.Collection+".yaml"); err != nil {
				t.Errorf("%s: shipped collection %s: %v", s.Name, s.Collection, err)
			}
		}
		if s.Hub != "" && hubErr == nil {
			if _, err := os.Stat(filepath.Join(debianHub, "collections", s.Hub+".yaml")); err != nil {
				t.Errorf("%s: hub collection %s: %v", s.Name, s.Hub, err)
			}
		}
		if len(s.Logs) > 0 && s.FileType == "" {
			t.Errorf("%s: logs without a type", s.Name)
		}
		for _, g := range s.Logs {
			if _, err := path.Match(g, ""); err != nil || !path.IsAbs(g) {
				t.Errorf("%s: log glob %q: %v", s.Name, g, err)
			}
			if prev, ok := typeOf[g]; ok && prev != s.FileType {
				t.Errorf("%s reads %s as %s, another service as %s", s.Name, g, s.FileType, prev)
			}
			typeOf[g] = s.FileType
		}
	}
}
