package acquire

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/yamlerr"
)

// An acquisition file over 1 MiB (a log dropped in acquis.d by mistake) is
// refused unread, and the error quotes none of it.
func TestLoadConfigDirTooLarge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "huge.yaml")
	body := "source: file\nfilenames: [/var/log/auth.log]\nlabels: {type: syslog}\n# " + strings.Repeat("x", 2<<20) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cs, err := LoadConfigDir(dir)
	if !errors.Is(err, yamlerr.ErrTooLarge) || cs != nil {
		t.Fatalf("LoadConfigDir = %v, %v; want ErrTooLarge", cs, err)
	}
	if !strings.Contains(err.Error(), path) || len(err.Error()) > 200 {
		t.Fatalf("error %q: want it short and naming %s", err.Error()[:min(len(err.Error()), 300)], path)
	}
}
