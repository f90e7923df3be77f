package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/model"
)

// An unknown subcommand is a usage error (exit 2) on one line, naming the
// closest command when there is one; a group alone still shows its help.
func TestUnknownSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"decisons"}, `unknown command "decisons" for "moat"; did you mean decisions?`},
		{[]string{"decisions", "lisst"}, `unknown command "lisst" for "moat decisions"; did you mean list?`},
		{[]string{"alerts", "inspekt", "3"}, `did you mean inspect?`},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh" for "moat completion"`},
		{[]string{"zzzzzzzz"}, `unknown command "zzzzzzzz" for "moat" (see moat --help)`},
		// A stray argument to a command that takes none, and a missing one.
		{[]string{"status", "extra"}, `unknown command "extra" for "moat status"`},
		{[]string{"notifications", "test"}, `test`},
	} {
		code, out, errOut := runMoat(t, "", tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		if !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || out != "" {
			t.Errorf("%v: stdout %q, stderr %q; want one line containing %q", tc.args, out, errOut, tc.want)
		}
	}
	code, out, _ := runMoat(t, "", "decisions")
	if code != exitOK || !strings.Contains(out, "Available Commands:") {
		t.Errorf("moat decisions: exit %d, %q; want its help", code, out)
	}
}

func TestVersionFlag(t *testing.T) {
	code, flagOut, errOut := runMoat(t, "", "--version")
	if code != exitOK {
		t.Fatalf("--version: exit %d: %s", code, errOut)
	}
	_, cmdOut, _ := runMoat(t, "", "version")
	if flagOut != cmdOut || !strings.HasPrefix(flagOut, "moat ") {
		t.Fatalf("--version = %q, moat version = %q; want the same line", flagOut, cmdOut)
	}
}

// -o human is the table, as in cscli; anything else unknown is exit 2.
func TestOutputHuman(t *testing.T) {
	cfg, _ := adminDaemon(t)
	code, human, errOut := runMoat(t, "", "status", "-c", cfg, "-o", "human")
	if code != exitOK {
		t.Fatalf("status -o human: exit %d: %s", code, errOut)
	}
	_, tbl, _ := runMoat(t, "", "status", "-c", cfg, "-o", "table")
	// Only the uptime line may differ between two runs.
	cut := func(s string) string { _, rest, _ := strings.Cut(s, "\n"); return rest }
	if cut(human) != cut(tbl) || !strings.Contains(human, "COUNT") {
		t.Fatalf("-o human:\n%s\n-o table:\n%s", human, tbl)
	}
	code, _, errOut = runMoat(t, "", "status", "-c", cfg, "-o", "yaml")
	if code != exitUsage || !strings.Contains(errOut, "human") {
		t.Fatalf("-o yaml: exit %d, %q", code, errOut)
	}
}

// completions runs the shell's completion request and returns the
// candidates, without the directive line.
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errOut := runMoat(t, "", append([]string{"__complete"}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %v: exit %d: %s", args, code, errOut)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			got = append(got, l)
		}
	}
	return got
}

// fakeStatusDaemon answers the status on a socket with these scenarios,
// and returns a config pointing at it.
func fakeStatusDaemon(t *testing.T, scenarios ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moat-compl-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "moat.sock")
	ln, err := net.Listen("unix", sock)
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/admin/status" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"scenarios":["%s"]}`, strings.Join(scenarios, `","`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte("api:\n  socket: "+sock+"\n"), 0o644))
	return cfg
}

func TestCompletion(t *testing.T) {
	code, out, _ := runMoat(t, "", "completion", "bash")
	if code != exitOK || !strings.Contains(out, "__start_moat") {
		t.Fatalf("completion bash: exit %d, %d bytes", code, len(out))
	}
	if got := completions(t, "status", "-o", ""); !slices.Equal(got, outputFormats) {
		t.Errorf("-o completes to %v, want %v", got, outputFormats)
	}
	if got := completions(t, "decisions", "list", "--origin", ""); !slices.Contains(got, "list") || !slices.Contains(got, "community") {
		t.Errorf("--origin completes to %v", got)
	}
	if got := completions(t, "decisions", "import", "x", "--format", "c"); !slices.Equal(got, []string{"values", "csv", "json"}) {
		t.Errorf("--format completes to %v", got)
	}

	cfg := fakeStatusDaemon(t, "crowdsecurity/ssh-bf", "crowdsecurity/http-probing", "moat/portscan")
	if got := completions(t, "decisions", "list", "-c", cfg, "--scenario", "crowdsecurity/"); !slices.Equal(got, []string{"crowdsecurity/ssh-bf", "crowdsecurity/http-probing"}) {
		t.Errorf("--scenario completes to %v", got)
	}
	if got := completions(t, "alerts", "list", "-c", cfg, "--scenario", ""); len(got) != 3 {
		t.Errorf("alerts list --scenario completes to %v", got)
	}

	cfg, svc := adminDaemon(t)
	ctx := context.Background()
	ds, err := svc.HandleAlert(ctx, model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: "Ip", Value: "198.18.5.5", Source: netip.MustParsePrefix("198.18.5.5/32"), Remediation: true, EventsCount: 6})
	if err != nil || len(ds) != 1 {
		t.Fatalf("HandleAlert = %v, %v", ds, err)
	}
	got := completions(t, "alerts", "inspect", "-c", cfg, "")
	if len(got) != 1 || !strings.HasSuffix(got[0], "\tcrowdsecurity/ssh-bf 198.18.5.5") {
		t.Errorf("alerts inspect completes to %q, want the alert's ID with its scenario and value", got)
	}
	if got := completions(t, "alerts", "inspect", "-c", cfg, "1", ""); len(got) != 0 {
		t.Errorf("a second argument completes to %v, want nothing", got)
	}
	for _, name := range []string{"fw-bouncer", "nginx-bouncer"} {
		if code, _, errOut := runMoat(t, "", "bouncers", "add", name, "-c", cfg, "-o", "raw"); code != exitOK {
			t.Fatalf("bouncers add: %s", errOut)
		}
	}
	if got := completions(t, "bouncers", "delete", "-c", cfg, "ng"); !slices.Equal(got, []string{"nginx-bouncer"}) {
		t.Errorf("bouncers delete ng completes to %v", got)
	}

	// No daemon: no candidates, no error, no wait.
	dead := filepath.Join(t.TempDir(), "moat.yaml")
	must(t, os.WriteFile(dead, []byte("api:\n  socket: "+filepath.Join(t.TempDir(), "none.sock")+"\n"), 0o644))
	if got := completions(t, "bouncers", "delete", "-c", dead, ""); len(got) != 0 {
		t.Errorf("without a daemon, completes to %v", got)
	}
}
