package acquire

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/internal/yamlerr"
)

var update = flag.Bool("update", false, "rewrite the golden error files")

// TestConfigBad loads every testdata/config/*.bad.yaml; each must fail with
// the message in its .err golden file, naming file:line.
func TestConfigBad(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := LoadConfig(f, data)
			if err == nil {
				t.Fatalf("no error; got %+v", cs)
			}
			if cs != nil || !errors.Is(err, ErrConfig) {
				t.Fatalf("want nil configs and ErrConfig, got %v, %v", cs, err)
			}
			var ye *yamlerr.Error
			if !errors.As(err, &ye) || !strings.HasPrefix(err.Error(), f+":") {
				t.Fatalf("error is not the loaders' one form, %s:line: message: %v", f, err)
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			if *update {
				os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644)
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update)", rerr)
			}
			if d := cmp.Diff(strings.TrimSpace(string(want)), err.Error()); d != "" {
				t.Fatalf("error differs (-want +got):\n%s", d)
			}
		})
	}
}

func TestConfigGood(t *testing.T) {
	if cs, err := LoadConfigDir("testdata/config"); err == nil {
		t.Fatalf("the directory holds bad files; LoadConfigDir must fail, got %d configs", len(cs))
	}
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/config/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "10-good.yaml"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not yaml"), 0o644)
	cs, err := LoadConfigDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "10-good.yaml")
	want := []Config{
		{Source: KindFile, Name: "file:/var/log/auth.log,/var/log/nginx/*.log", Labels: map[string]string{"type": "syslog"},
			Mode: "tail", Start: "tail", Filenames: []string{"/var/log/auth.log", "/var/log/nginx/*.log"},
			MaxLineLength: DefaultMaxLineLength, PollInterval: DefaultPollInterval, File: path, Line: 2},
		{Source: KindJournal, Name: "journalctl:_SYSTEMD_UNIT=ssh.service", Labels: map[string]string{"type": "syslog"},
			Mode: "tail", Start: "head", JournalctlFilter: []string{"_SYSTEMD_UNIT=ssh.service"},
			MaxLineLength: DefaultMaxLineLength, PollInterval: DefaultPollInterval, File: path, Line: 9},
		{Source: KindFile, Name: "file:/var/log/nginx/error.log", Labels: map[string]string{"type": "nginx"},
			Mode: "tail", Start: "tail", Filename: "/var/log/nginx/error.log", MaxLineLength: 4096,
			PollInterval: 250 * time.Millisecond, ForceInotify: true, ExcludeRegexps: []string{`\.gz$`}, File: path, Line: 16},
	}
	if d := cmp.Diff(want, cs); d != "" {
		t.Fatalf("configs differ (-want +got):\n%s", d)
	}
	for _, c := range cs {
		if _, err := New(c, t.TempDir()); err != nil {
			t.Fatalf("New(%s): %v", c.Where(), err)
		}
	}
	// The same name twice across files is an error.
	os.WriteFile(filepath.Join(dir, "20-dup.yaml"), data, 0o644)
	if _, err := LoadConfigDir(dir); err == nil || !strings.Contains(err.Error(), "already used at "+path+":2") {
		t.Fatalf("duplicate name: %v", err)
	}
}
