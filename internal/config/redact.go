package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted is the mark put in place of a secret; plain letters, so a
// redacted URL is still a URL and the redacted file still loads.
const Redacted = "REDACTED"

// secretKey matches the keys whose value is a secret wherever they are:
// passwords, tokens, API keys, JWT and other secrets. Keys naming a file
// (password_file, ca_file) hold a path and are kept.
var secretKey = regexp.MustCompile(`(?i)(^|_)(password|passwd|secret|token|api_?key|private_key|credentials?)$`)

// secretParam matches URL query parameters that carry a credential
// (?sig= of Azure, ?token=, ?api_key=, ?access_token=...).
var secretParam = regexp.MustCompile(`(?i)(pass|secret|token|key|sig|auth|code|credential)`)

// Redact renders the effective configuration as YAML for a support
// bundle, with every secret replaced by Redacted: passwords, tokens, API
// keys and other secret-named keys, webhook URLs past their host (Slack,
// Telegram and Teams carry their token in the path or query), request
// headers (Authorization, API keys), the environment and arguments of
// actions, the password of any URL, and credential-like query parameters.
// What is left says how moat is set up, not how to log in anywhere.
func (c *Config) Redact() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal configuration: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read back configuration: %w", err)
	}
	redactNode(&doc, nil)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("marshal redacted configuration: %w", err)
	}
	return out, nil
}

// redactNode walks n, path being the mapping keys above it.
func redactNode(n *yaml.Node, path []string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			p := append(path[:len(path):len(path)], k)
			if wholeSecret(p) {
				redactAll(v)
				continue
			}
			redactNode(v, p)
		}
	case yaml.ScalarNode:
		if n.Value == "" || n.Tag != "!!str" && n.Tag != "" {
			return
		}
		last := ""
		if len(path) > 0 {
			last = path[len(path)-1]
		}
		switch {
		case len(path) == 3 && path[0] == "notifications" && last == "url":
			n.Value = hostOnly(n.Value)
		default:
			n.Value = redactURL(n.Value)
		}
	}
}

// wholeSecret reports whether everything under the key at path is secret.
func wholeSecret(path []string) bool {
	last := path[len(path)-1]
	if secretKey.MatchString(last) {
		return true
	}
	switch {
	case len(path) == 3 && path[0] == "notifications" && last == "headers":
		return true
	case len(path) == 3 && path[0] == "actions" && (last == "env" || last == "args"):
		return true
	}
	return false
}

// redactAll replaces every scalar under n, keeping its shape (a list
// keeps its length, a mapping its keys).
func redactAll(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "" && n.Tag != "!!null" {
			n.Value, n.Tag, n.Style = Redacted, "!!str", 0
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			redactAll(n.Content[i])
		}
	default:
		for _, c := range n.Content {
			redactAll(c)
		}
	}
}

// hostOnly keeps a URL's scheme and host: what a webhook URL says past
// them is the token, for most services.
func hostOnly(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Redacted
	}
	if u.Path == "" && u.RawQuery == "" && u.User == nil {
		return s
	}
	return u.Scheme + "://" + u.Host + "/" + Redacted
}

// redactURL hides the password and credential-like query parameters of a
// value that is a URL; other values come back as they are.
func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
	}
	if q := u.Query(); len(q) > 0 {
		changed := false
		for k := range q {
			if secretParam.MatchString(k) {
				q.Set(k, Redacted)
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// Secrets lists the secret values the configuration holds, for a support
// bundle to scrub from free text (logs, errors) on top of Redact: the
// passwords, the webhook URLs and their tokens, header values, action
// environment values, and the passwords of URLs.
func (c *Config) Secrets() []string {
	var out []string
	add := func(ss ...string) {
		for _, s := range ss {
			if s = strings.TrimSpace(s); s != "" && s != Redacted {
				out = append(out, s)
			}
		}
	}
	addURL := func(s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		if u.User != nil {
			p, _ := u.User.Password()
			add(p)
		}
		for k, vs := range u.Query() {
			if secretParam.MatchString(k) {
				add(vs...)
			}
		}
	}
	add(c.Fleet.Password)
	addURL(c.Store.DSN)
	addURL(c.Community.Proxy)
	for _, f := range c.Feeds {
		addURL(f.URL)
	}
	for _, n := range c.Notifications {
		add(n.SMTP.Password)
		for _, v := range n.Headers {
			add(v)
		}
		if u, err := url.Parse(n.URL); err == nil && (u.Path != "" || u.RawQuery != "") {
			add(n.URL, strings.TrimPrefix(u.RequestURI(), "/"))
			// A token logged alone (in an error) is one path segment.
			for _, seg := range strings.Split(u.Path, "/") {
				if len(seg) >= 16 || len(seg) >= 8 && strings.ContainsAny(seg, "0123456789") {
					add(seg)
				}
			}
			addURL(n.URL)
		}
	}
	for _, a := range c.Actions {
		for _, v := range a.Env {
			add(v)
		}
	}
	return out
}

// SecretFiles are the files the configuration reads secrets from
// (passwords, tokens, keys): a support bundle never copies them, and
// scrubs what they hold from free text.
func (c *Config) SecretFiles() []string {
	var out []string
	for _, p := range []string{c.Fleet.PasswordFile, c.Fleet.BouncerKeyFile, c.Server.EnrolmentTokenFile, c.Server.TLS.Key} {
		if p != "" {
			out = append(out, p)
		}
	}
	for _, n := range c.Notifications {
		if n.SMTP.PasswordFile != "" {
			out = append(out, n.SMTP.PasswordFile)
		}
	}
	return out
}
