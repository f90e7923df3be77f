package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/testutil"
)

// copyTree copies the shipped hub so a test can break one file of it.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	must(t, os.CopyFS(dst, os.DirFS(src)))
}

func TestBadContentStopsTheStart(t *testing.T) {
	cases := []struct {
		name, file, content string
		want                *regexp.Regexp
	}{
		{
			name:    "scenario with an unknown key",
			file:    "scenarios/moat/ssh-bf.yaml",
			content: "type: leaky\nname: moat/ssh-bf\nfilter: \"true\"\ncapacity: 5\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\nleak_speed: 3s\n",
			want:    regexp.MustCompile(`ssh-bf\.yaml:7\b.*leak_speed`),
		},
		{
			name:    "parser that is not YAML",
			file:    "parsers/s01-parse/moat/sshd-logs.yaml",
			content: "name: moat/sshd-logs\nfilter: \"evt.Parsed.program == 'sshd'\"\nnodes:\n  - grok: [unclosed\n",
			want:    regexp.MustCompile(`sshd-logs\.yaml:\d+`),
		},
		{
			name:    "scenario filter that does not compile",
			file:    "scenarios/moat/ssh-bf.yaml",
			content: "type: leaky\nname: moat/ssh-bf\ndescription: d\nfilter: \"evt.Meta.log_type ==\"\ncapacity: 5\nleakspeed: 10s\ngroupby: evt.Meta.source_ip\n",
			want:    regexp.MustCompile(`ssh-bf\.yaml:4\b.*filter`),
		},
	}
	root := repoRoot(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			hub := filepath.Join(dir, "hub")
			copyTree(t, filepath.Join(root, "packaging/hub"), hub)
			must(t, os.WriteFile(filepath.Join(hub, tc.file), []byte(tc.content), 0o644))
			cfg := filepath.Join(dir, "moat.yaml")
			must(t, os.WriteFile(cfg, []byte("state_dir: "+dir+"/state\napi:\n  listen: \"\"\n  socket: "+dir+"/s.sock\nmetrics:\n  listen: \"\"\nhub:\n  dir: "+hub+"\n  patterns: "+root+"/packaging/patterns\nacquisition:\n  dir: "+dir+"/acquis.d\n"), 0o644))
			must(t, os.MkdirAll(dir+"/acquis.d", 0o755))

			for _, args := range [][]string{{"config", "check"}, {"run"}} {
				var cmd *exec.Cmd
				var ns *testutil.NetNS
				if args[0] == "run" {
					// The daemon may not touch the kernel before failing:
					// run it in its own namespace and look there.
					ns = testutil.NewNetNS(t)
					cmd = ns.Command(append([]string{os.Args[0]}, append(args, "--config", cfg)...)...)
					cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
				} else {
					cmd = moatCommand(append(args, "--config", cfg)...)
				}
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
					t.Fatalf("moat %s: %v, want exit code %d\n%s", args[0], err, exitUsage, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) != 1 || !tc.want.MatchString(lines[0]) {
					t.Fatalf("moat %s printed %q, want one line matching %s", args[0], out, tc.want)
				}
				if ns != nil {
					if tables := ns.Run(t, "nft", "list", "tables"); strings.Contains(tables, "moat") {
						t.Fatalf("a failed start created nftables state:\n%s", tables)
					}
				}
			}
		})
	}
}
