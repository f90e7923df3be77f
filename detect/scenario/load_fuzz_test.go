package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/packaging"
)

// FuzzLoadScenarioFile loads a scenario file from attacker-controlled
// YAML. An error leaves no set and names the file; a set that loads holds
// named scenarios, loads the same way twice, and only raises alerts for
// the scenarios it holds.
func FuzzLoadScenarioFile(f *testing.F) {
	testutil.SeedFiles(f, packaging.Files, "hub/scenarios")
	f.Add([]byte("type: leaky\nname: a/b\ndescription: d\nfilter: 'true'\ngroupby: evt.Meta.source_ip\ncapacity: 1\nleakspeed: 1s\nblackhole: 1m\n"))
	f.Add([]byte("type: trigger\nname: a/t\ndescription: d\nfilter: evt.Meta.source_ip != ''\ngroupby: evt.Meta.source_ip\n---\n---\ntype: counter\nname: a/c\ndescription: d\nfilter: 'true'\nduration: 1s\ncapacity: -1\n"))
	f.Add([]byte("type: conditional\nname: a/c\ndescription: d\nfilter: 'true'\ncondition: len(queue.Queue) > 1\nleakspeed: 1s\ncapacity: -1\n"))
	f.Add([]byte("type: leaky\nname: a/b\ndescription: d\nfilter: 'true'\ncapacity: 0\nleakspeed: 0s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load([]string{path}, Options{MaxBuckets: 64})
		if err != nil {
			var le *LoadError
			if s != nil || (!errors.As(err, &le) && !strings.Contains(err.Error(), path)) {
				t.Fatalf("error %q with set %v: want none, and the file named", err, s)
			}
			return
		}
		names := s.Names()
		for _, n := range names {
			if n == "" {
				t.Fatal("a scenario without a name loaded")
			}
		}
		again, err := Load([]string{path}, Options{MaxBuckets: 64})
		if err != nil || !slices.Equal(again.Names(), names) {
			t.Fatalf("second load: %v, names %v, first %v", err, again, names)
		}
		at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for i := range 4 {
			evt := detect.NewEvent(detect.Line{Raw: "x", Labels: map[string]string{"type": "syslog"}, Time: at, Process: true})
			evt.Time = at.Add(time.Duration(i) * time.Second)
			evt.Meta["source_ip"] = "198.18.0.1"
			evt.Meta["service"] = "ssh"
			evt.Meta["log_type"] = "ssh_failed-auth"
			evt.Meta["http_path"] = "/.env"
			for _, a := range s.Pour(evt) {
				if !slices.Contains(names, a.Scenario) {
					t.Fatalf("alert for %q, not a loaded scenario (%v)", a.Scenario, names)
				}
			}
		}
		for _, a := range s.Flush() {
			if !slices.Contains(names, a.Scenario) {
				t.Fatalf("alert for %q, not a loaded scenario (%v)", a.Scenario, names)
			}
		}
	})
}
