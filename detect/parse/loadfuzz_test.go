package parse

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/packaging"
)

// shippedContent extracts the content moat embeds (hub/, patterns/,
// acquis.d/) so the fuzz targets run the parsers as they ship today,
// not a copy that drifts from them.
func shippedContent(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.CopyFS(dir, packaging.Files); err != nil {
		tb.Fatalf("extract shipped content: %v", err)
	}
	return dir
}

// FuzzLoadParserFile loads a parser file from attacker-controlled YAML. An
// error names the file and leaves no pipeline; a pipeline that loads has
// the one stage asked for and parses lines with Parse agreeing with
// Process.
func FuzzLoadParserFile(f *testing.F) {
	dir := shippedContent(f)
	paths, _ := filepath.Glob(filepath.Join(dir, "hub", "parsers", "*", "*", "*.yaml"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("filter: 1 +\n"))
	f.Add([]byte("name: x/y\ngrok:\n  pattern: '%{NOPE:x}'\n  apply_on: message\n"))
	f.Add([]byte("name: x/y\nonsuccess: next_stage\nnodes:\n  - grok:\n      pattern: '(?P<a>a)|(?P<a>b)'\n      apply_on: Line.Raw\n"))
	patterns := filepath.Join(dir, "patterns")
	lines := []string{
		"Mar  1 00:00:00 web1 sshd[1]: Invalid user guest from 198.18.38.187 port 17744",
		`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8"`,
		"",
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := Load([]File{{Path: path, Stage: "s01-parse"}}, Options{PatternDir: patterns, DataDir: t.TempDir(), Year: 2026})
		if err != nil {
			if p != nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q with pipeline %v: want none, and the file named", err, p)
			}
			return
		}
		if p == nil || !slices.Equal(p.Stages(), []string{"s01-parse"}) {
			t.Fatalf("loaded pipeline %v: want stage s01-parse", p)
		}
		for _, l := range lines {
			evt := detect.NewEvent(detect.Line{Raw: l, Labels: map[string]string{"type": "syslog"}, Process: true})
			if ok := p.Parse(evt); ok != evt.Process {
				t.Fatalf("%q: Parse returned %v, Process %v", l, ok, evt.Process)
			}
		}
	})
}
