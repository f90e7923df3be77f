package config

import (
	"strings"
	"testing"
	"time"
)

// TestBadNotifications: every mistake in a channel names the file, the
// line of the key at fault and what is wanted.
func TestBadNotifications(t *testing.T) {
	want := map[string]string{
		"unknown-kind.bad.yaml":   `testdata/notify/unknown-kind.bad.yaml:3: notification pager: kind "pagerduty": want webhook, email or file`,
		"no-kind.bad.yaml":        `testdata/notify/no-kind.bad.yaml:3: notification pager: no kind: want webhook, email or file`,
		"bad-url.bad.yaml":        `testdata/notify/bad-url.bad.yaml:4: notification slack: url "hooks.slack.com/services/T0/B0/x": want an http:// or https:// URL with a host`,
		"bad-template.bad.yaml":   `testdata/notify/bad-template.bad.yaml:6: notification slack: body: line 1 of the template: unexpected "}" in operand`,
		"unknown-func.bad.yaml":   `testdata/notify/unknown-func.bad.yaml:7: notification mail: subject: line 1 of the template: function "shout" not defined`,
		"unknown-key.bad.yaml":    `testdata/notify/unknown-key.bad.yaml:7: unknown key "passwd"`,
		"foreign-key.bad.yaml":    `testdata/notify/foreign-key.bad.yaml:5: notification siem: url does not apply to a file channel`,
		"bad-to.bad.yaml":         `testdata/notify/bad-to.bad.yaml:8: notification mail: to "not an address": want an email address`,
		"bad-tls.bad.yaml":        `testdata/notify/bad-tls.bad.yaml:6: notification mail: smtp tls "ssl": want starttls, tls or none`,
		"relative-path.bad.yaml":  `testdata/notify/relative-path.bad.yaml:4: notification siem: path "alerts.ndjson": want an absolute file path`,
		"negative-queue.bad.yaml": `testdata/notify/negative-queue.bad.yaml:5: notification hook: queue -1: want 0 (1000) to 1000000`,
		"bad-group-wait.bad.yaml": `testdata/notify/bad-group-wait.bad.yaml:5: notification hook: group_wait 2h0m0s: want 0 to 1h`,
		"block-template.bad.yaml": `testdata/notify/block-template.bad.yaml:8: notification teams: body: line 3 of the template: unexpected "}" in operand`,
		"bad-name.bad.yaml":       `testdata/notify/bad-name.bad.yaml:2: notification name "my channel": want 1 to 64 letters, digits, '.', '-' or '_'`,
	}
	checkBadConfigs(t, "testdata/notify", want)
}

func TestGoodNotifications(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(`
notifications:
  slack:
    kind: webhook
    url: https://hooks.slack.com/services/T0/B0/secret
    headers: {Content-Type: application/json}
    body: '{"text": {{ .Alert.Scenario | json }}}'
    group_wait: 30s
    group_threshold: 20
  mail:
    kind: email
    smtp: {host: smtp.example.org, port: 587, username: moat, password_file: /etc/moat/smtp.pass}
    from: moat@example.org
    to: [root@example.org, "Ops <ops@example.org>"]
    subject: "[moat] {{ len .Alerts }} ban(s)"
  siem:
    kind: file
    path: /var/log/moat/alerts.ndjson
    max_size_mb: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.NotificationNames(); len(got) != 3 || got[0] != "mail" || got[2] != "slack" {
		t.Fatalf("names %v", got)
	}
	if s := cfg.Notifications["slack"]; s.GroupWait != 30*time.Second || s.GroupThreshold != 20 {
		t.Fatalf("slack %+v", s)
	}
	err = cfg.NotificationError("mail", "boom", "smtp")
	if got := err.Error(); got != "moat.yaml:12: notification mail: boom" {
		t.Fatalf("NotificationError = %q", got)
	}
}

func TestMarshalHidesSMTPPassword(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(`notifications:
  mail:
    kind: email
    smtp: {host: smtp.example.org, username: moat, password: hunter2}
    from: moat@example.org
    to: [root@example.org]
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "password: (hidden)") {
		t.Fatalf("marshalled:\n%s", out)
	}
	if cfg.Notifications["mail"].SMTP.Password != "hunter2" {
		t.Fatal("Marshal changed the configuration")
	}
}
