package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// Notification is one named channel under notifications:. Kind selects
// which keys apply: webhook (url, method, headers, body), email (smtp,
// from, to, subject, body) or file (path, max_size_mb, max_files). The
// delivery keys (queue, group_wait, group_threshold, timeout, retries,
// retry_backoff) apply to every kind.
type Notification struct {
	Kind string `yaml:"kind"`

	URL     string            `yaml:"url,omitempty"`
	Method  string            `yaml:"method,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty"`

	SMTP    SMTP     `yaml:"smtp,omitempty"`
	From    string   `yaml:"from,omitempty"`
	To      []string `yaml:"to,omitempty"`
	Subject string   `yaml:"subject,omitempty"`

	// Body is a Go text/template (webhook and email); empty takes the
	// kind's default.
	Body string `yaml:"body,omitempty"`

	Path      string `yaml:"path,omitempty"`
	MaxSizeMB int    `yaml:"max_size_mb,omitempty"`
	MaxFiles  int    `yaml:"max_files,omitempty"`

	// Queue bounds the alerts waiting for this channel; past it the
	// oldest is dropped (and counted), never the ban that raised it.
	Queue int `yaml:"queue,omitempty"`
	// GroupWait holds the first alert of a message this long for others
	// to join it, up to GroupThreshold alerts in one message.
	GroupWait      time.Duration `yaml:"group_wait,omitempty"`
	GroupThreshold int           `yaml:"group_threshold,omitempty"`
	// Timeout bounds one delivery attempt; Retries more attempts (0 is
	// 3, -1 none) follow a failed one, RetryBackoff apart and doubling.
	Timeout      time.Duration `yaml:"timeout,omitempty"`
	Retries      int           `yaml:"retries,omitempty"`
	RetryBackoff time.Duration `yaml:"retry_backoff,omitempty"`
}

// SMTP is an email channel's server.
type SMTP struct {
	Host string `yaml:"host,omitempty"`
	Port int    `yaml:"port,omitempty"`
	// TLS is starttls (the default, port 587), tls (implicit, port 465) or
	// none (port 25; only to a loopback relay or a trusted network).
	TLS      string `yaml:"tls,omitempty"`
	Username string `yaml:"username,omitempty"`
	// Password or PasswordFile (read at start) authenticate with PLAIN.
	Password     string `yaml:"password,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
	// CAFile, when set, is the only CA trusted for the server's
	// certificate (a relay with a private CA); otherwise the system's.
	CAFile string `yaml:"ca_file,omitempty"`
}

// Notification kinds.
const (
	NotifyWebhook = "webhook"
	NotifyEmail   = "email"
	NotifyFile    = "file"
)

// NotifyTemplateFuncs names the functions notification templates may call;
// enforce/notify defines them (a test there keeps both lists equal). They
// are known here so a template calling another one fails the load with its
// line, not the first alert.
var NotifyTemplateFuncs = []string{"json", "join", "upper", "lower", "truncate", "rfc3339", "duration", "hostname"}

// NotificationNames returns the configured channel names, sorted.
func (c *Config) NotificationNames() []string {
	names := make([]string, 0, len(c.Notifications))
	for n := range c.Notifications {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NotificationError is an error at a key of channel name, at its line in
// the file the configuration came from; keys empty points at the channel.
func (c *Config) NotificationError(name, msg string, keys ...any) error {
	return c.errAt(fmt.Sprintf("notification %s: %s", name, msg), append([]any{"notifications", name}, keys...)...)
}

// NotificationTemplateError is an error at line n of the template under
// key of channel name, at its line in the file.
func (c *Config) NotificationTemplateError(name, key string, n int, msg string) error {
	line := 0
	if c.root != nil {
		line = templateLine(c.root, n, "notifications", name, key)
	}
	file := c.Source
	if file == "" {
		file = "(built-in default)"
	}
	return &Error{File: file, Line: line, Msg: fmt.Sprintf("notification %s: %s", name, msg)}
}

var notifyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validateNotifications(root *yaml.Node, bad func(msg string, keys ...any) error) error {
	for _, name := range c.NotificationNames() {
		n := c.Notifications[name]
		at := func(msg string, keys ...any) error {
			return bad(fmt.Sprintf("notification %s: %s", name, msg), append([]any{"notifications", name}, keys...)...)
		}
		tmplAt := func(key string, line int, msg string) error {
			return &Error{File: c.Source, Line: templateLine(root, line, "notifications", name, key), Msg: fmt.Sprintf("notification %s: %s", name, msg)}
		}
		if !notifyName.MatchString(name) {
			return bad(fmt.Sprintf("notification name %q: want 1 to 64 letters, digits, '.', '-' or '_'", short(name)), "notifications")
		}
		var err error
		switch n.Kind {
		case NotifyWebhook:
			err = n.validateWebhook(at, tmplAt)
		case NotifyEmail:
			err = n.validateEmail(at, tmplAt)
		case NotifyFile:
			err = n.validateFile(at)
		case "":
			return at("no kind: want webhook, email or file")
		default:
			return at(fmt.Sprintf("kind %q: want webhook, email or file", short(n.Kind)), "kind")
		}
		if err != nil {
			return err
		}
		if err := n.validateDelivery(at); err != nil {
			return err
		}
	}
	return nil
}

// foreign refuses keys of another kind: a url on an email channel is a
// mistake the operator should hear about, not a silently unused value.
func (n *Notification) foreign(at func(string, ...any) error) error {
	keys := map[string]bool{
		"url": n.URL != "", "method": n.Method != "", "headers": len(n.Headers) > 0,
		"smtp": n.SMTP != (SMTP{}), "from": n.From != "", "to": len(n.To) > 0, "subject": n.Subject != "",
		"body": n.Body != "", "path": n.Path != "", "max_size_mb": n.MaxSizeMB != 0, "max_files": n.MaxFiles != 0,
	}
	own := map[string][]string{
		NotifyWebhook: {"url", "method", "headers", "body"},
		NotifyEmail:   {"smtp", "from", "to", "subject", "body"},
		NotifyFile:    {"path", "max_size_mb", "max_files"},
	}[n.Kind]
	var names []string
	for k, set := range keys {
		if set && !slices.Contains(own, k) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return at(fmt.Sprintf("%s does not apply to a %s channel", names[0], n.Kind), names[0])
}

// tmplAtFunc is an error at line of the template under key.
type tmplAtFunc func(key string, line int, msg string) error

func (n *Notification) validateWebhook(at func(string, ...any) error, tmplAt tmplAtFunc) error {
	if err := n.foreign(at); err != nil {
		return err
	}
	if n.URL == "" {
		return at("webhook without url")
	}
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return at(fmt.Sprintf("url %q: want an http:// or https:// URL with a host", short(n.URL)), "url")
	}
	switch strings.ToUpper(n.Method) {
	case "", "POST", "PUT", "PATCH", "GET":
	default:
		return at(fmt.Sprintf("method %q: want POST, PUT, PATCH or GET", short(n.Method)), "method")
	}
	for k, v := range n.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") || strings.ContainsAny(v, "\r\n") {
			return at(fmt.Sprintf("header %q: want a name without spaces or colons and a one-line value", short(k)), "headers")
		}
	}
	return checkTemplate(tmplAt, n.Body, "body")
}

func (n *Notification) validateEmail(at func(string, ...any) error, tmplAt tmplAtFunc) error {
	if err := n.foreign(at); err != nil {
		return err
	}
	s := n.SMTP
	if s.Host == "" {
		return at("email without smtp host", "smtp")
	}
	if s.Port < 0 || s.Port > 65535 {
		return at(fmt.Sprintf("smtp port %d: want 1 to 65535", s.Port), "smtp", "port")
	}
	switch s.TLS {
	case "", "starttls", "tls", "none":
	default:
		return at(fmt.Sprintf("smtp tls %q: want starttls, tls or none", short(s.TLS)), "smtp", "tls")
	}
	if s.Password != "" && s.PasswordFile != "" {
		return at("smtp password and password_file: set one", "smtp", "password_file")
	}
	if (s.Password != "" || s.PasswordFile != "") && s.Username == "" {
		return at("smtp password without username", "smtp")
	}
	if _, err := mail.ParseAddress(n.From); err != nil {
		return at(fmt.Sprintf("from %q: want an email address", short(n.From)), "from")
	}
	if len(n.To) == 0 {
		return at("email without recipients (to)")
	}
	for i, to := range n.To {
		if _, err := mail.ParseAddress(to); err != nil {
			return at(fmt.Sprintf("to %q: want an email address", short(to)), "to", i)
		}
	}
	if err := checkTemplate(tmplAt, n.Subject, "subject"); err != nil {
		return err
	}
	return checkTemplate(tmplAt, n.Body, "body")
}

func (n *Notification) validateFile(at func(string, ...any) error) error {
	if err := n.foreign(at); err != nil {
		return err
	}
	if n.Path == "" || !strings.HasPrefix(n.Path, "/") {
		return at(fmt.Sprintf("path %q: want an absolute file path", short(n.Path)), "path")
	}
	if n.MaxSizeMB < 0 {
		return at(fmt.Sprintf("max_size_mb %d: want 0 (100) or more", n.MaxSizeMB), "max_size_mb")
	}
	if n.MaxFiles < 0 || n.MaxFiles > 100 {
		return at(fmt.Sprintf("max_files %d: want 0 (5) to 100", n.MaxFiles), "max_files")
	}
	return nil
}

func (n *Notification) validateDelivery(at func(string, ...any) error) error {
	switch {
	case n.Queue < 0 || n.Queue > 1_000_000:
		return at(fmt.Sprintf("queue %d: want 0 (1000) to 1000000", n.Queue), "queue")
	case n.GroupWait < 0 || n.GroupWait > time.Hour:
		return at(fmt.Sprintf("group_wait %s: want 0 to 1h", n.GroupWait), "group_wait")
	case n.GroupThreshold < 0 || n.GroupThreshold > 10_000:
		return at(fmt.Sprintf("group_threshold %d: want 0 (default) to 10000", n.GroupThreshold), "group_threshold")
	case n.Timeout < 0 || n.Timeout > 10*time.Minute:
		return at(fmt.Sprintf("timeout %s: want 0 (10s) to 10m", n.Timeout), "timeout")
	case n.Retries < -1 || n.Retries > 100:
		return at(fmt.Sprintf("retries %d: want -1 (none), 0 (3) or up to 100", n.Retries), "retries")
	case n.RetryBackoff < 0 || n.RetryBackoff > time.Hour:
		return at(fmt.Sprintf("retry_backoff %s: want 0 (1s) to 1h", n.RetryBackoff), "retry_backoff")
	}
	return nil
}

// checkTemplate parses a template with the functions notifications have,
// so a syntax error or an unknown function stops the load at its line.
func checkTemplate(at tmplAtFunc, text, key string) error {
	if text == "" {
		return nil
	}
	funcs := template.FuncMap{}
	for _, f := range NotifyTemplateFuncs {
		funcs[f] = func(...any) (any, error) { return nil, nil }
	}
	if _, err := template.New(key).Funcs(funcs).Parse(text); err != nil {
		// "template: body:3: msg" says line 3 of the template.
		msg := strings.TrimPrefix(firstLineOf(err.Error()), "template: "+key+":")
		line := 1
		if n, rest, ok := strings.Cut(msg, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line = l
			}
			msg = "line " + n + " of the template: " + rest
		}
		return at(key, line, fmt.Sprintf("%s: %s", key, msg))
	}
	return nil
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// MarshalYAML shows a password as set, not what it is: moat config check
// prints the effective configuration to a terminal or a ticket.
func (s SMTP) MarshalYAML() (any, error) {
	type plain SMTP
	if s.Password != "" {
		s.Password = "(hidden)"
	}
	return plain(s), nil
}

// templateLine is the file line of line n of the template at path: a
// literal block (body: |) starts on the line after its key; any other
// scalar is on the key's line.
func templateLine(root *yaml.Node, n int, path ...any) int {
	line := lineOf(root, path...)
	if v := valueAt(root, path...); v != nil && v.Style&yaml.LiteralStyle != 0 {
		return line + n
	}
	return line
}

// valueAt is the node at a path of mapping keys, or nil.
func valueAt(root *yaml.Node, path ...any) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		k, ok := p.(string)
		if !ok || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}
