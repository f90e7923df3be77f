package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestActions(t *testing.T) {
	good := `actions:
  report:
    command: /usr/local/bin/abuse-report
    args: ["--ip", "{{.Value}}", "--scenario", "{{.Scenario}}"]
    env:
      REPORT_DURATION: "{{.Duration}}"
    on: [ban, unban]
    origins: [local]
    timeout: 10s
    concurrency: 4
    queue: 50
`
	c, err := Parse("/etc/moat/moat.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := c.Actions["report"]
	if !ok || a.Command != "/usr/local/bin/abuse-report" || len(a.Args) != 4 || a.Env["REPORT_DURATION"] != "{{.Duration}}" ||
		len(a.On) != 2 || a.Timeout != 10*time.Second || a.Concurrency != 4 || a.Queue != 50 || a.Origins[0] != "local" {
		t.Fatalf("parsed %+v", c.Actions)
	}
	if names := c.ActionNames(); len(names) != 1 || names[0] != "report" {
		t.Errorf("names %v", names)
	}
	if err := c.ActionError("report", "boom", "args", 1); err == nil || err.Error() != "/etc/moat/moat.yaml:4: action report: boom" {
		t.Errorf("ActionError: %v", err)
	}

	for _, tc := range []struct{ src, want string }{
		{"actions:\n  r:\n    command: abuse-report\n", `x.yaml:3: action r: command "abuse-report": want an absolute path`},
		{"actions:\n  r:\n    command: /bin/true\n    args: [\"ok\", \"{{.Value\"]\n", `x.yaml:4: action r: args[1]: template: arg:1: unclosed action`},
		{"actions:\n  r:\n    command: /bin/true\n    env:\n      A: \"{{\"\n", `x.yaml:5: action r: env A:`},
		{"actions:\n  r:\n    command: /bin/true\n    on: [ban, expire]\n", `x.yaml:4: action r: on "expire": want ban or unban`},
		{"actions:\n  r:\n    command: /bin/true\n    on: [ban, ban]\n", `x.yaml:4: action r: on lists an event twice`},
		{"actions:\n  r:\n    command: /bin/true\n    timeout: 2h\n", `x.yaml:4: action r: timeout 2h0m0s`},
		{"actions:\n  r:\n    command: /bin/true\n    concurrency: 100\n", `x.yaml:4: action r: concurrency 100`},
		{"actions:\n  r:\n    command: /bin/true\n    queue: -1\n", `x.yaml:4: action r: queue -1`},
		{"actions:\n  r:\n    command: /bin/true\n    shell: yes\n", `x.yaml:4: unknown key "shell"`},
		{"actions:\n  \"my action\":\n    command: /bin/true\n", `x.yaml:2: action name "my action"`},
	} {
		_, err := Parse("x.yaml", []byte(tc.src))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}
