package config

import (
	"slices"
	"strings"
	"testing"
)

// secretsYAML holds one secret of every kind moat.yaml takes; each secret
// has "s3cr" in it, which nothing else in the file has.
const secretsYAML = `store:
  dsn: postgres://moat:s3cr-dsn-pass@db.example:5432/moat?sslmode=verify-full&password=s3cr-dsn-param
fleet:
  server: https://fleet.example:8089
  machine_id: agent-1
  password: s3cr-fleet-pass
community:
  proxy: socks5://tor:s3cr-proxy-pass@127.0.0.1:9050
feeds:
  - name: list
    url: https://lists.example/ips.txt?api_key=s3cr-feed-key
notifications:
  slack:
    kind: webhook
    url: https://hooks.slack.com/services/T00000000/B00000000/s3cr3tSlackToken0123
  gotify:
    kind: webhook
    url: https://gotify.example.org/message?token=s3cr-gotify
    headers:
      X-Gotify-Key: s3cr-gotify-header
      Authorization: Bearer s3cr-bearer
  mail:
    kind: email
    smtp: {host: smtp.example.org, username: moat, password: s3cr-smtp-pass}
    from: moat@example.org
    to: [root@example.org]
actions:
  report:
    command: /usr/local/bin/report
    args: [--api-token, s3cr-action-arg]
    env: {REPORT_TOKEN: s3cr-action-env}
`

func TestRedact(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(secretsYAML))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redact()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if i := strings.Index(text, "s3cr"); i >= 0 {
		t.Fatalf("a secret is left at %q:\n%s", text[max(0, i-40):min(len(text), i+40)], text)
	}
	for _, want := range []string{
		"https://hooks.slack.com/" + Redacted, "https://gotify.example.org/" + Redacted,
		"postgres://moat:" + Redacted + "@db.example:5432/moat?", "sslmode=verify-full",
		"machine_id: agent-1", "password: " + Redacted, "X-Gotify-Key: " + Redacted,
		"command: /usr/local/bin/report", "REPORT_TOKEN: " + Redacted,
		"https://lists.example/ips.txt?api_key=",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("redacted configuration lacks %q:\n%s", want, text)
		}
	}
	// The redacted file is still a configuration moat reads.
	if _, err := Parse("redacted.yaml", out); err != nil {
		t.Errorf("the redacted configuration does not load: %v", err)
	}
	secrets := cfg.Secrets()
	for _, s := range []string{"s3cr-dsn-pass", "s3cr-dsn-param", "s3cr-fleet-pass", "s3cr-proxy-pass", "s3cr-feed-key",
		"s3cr3tSlackToken0123", "s3cr-gotify", "s3cr-gotify-header", "Bearer s3cr-bearer", "s3cr-smtp-pass", "s3cr-action-env"} {
		if !slices.Contains(secrets, s) {
			t.Errorf("Secrets() lacks %q: %q", s, secrets)
		}
	}
}
