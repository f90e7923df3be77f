package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/config"
)

const defaultSubject = `[moat] {{ .Host }}: {{ if eq (len .Alerts) 1 }}{{ .Alert.Value }} banned ({{ .Alert.Scenario }}){{ else }}{{ len .Alerts }} alerts{{ end }}{{ if .Test }} (test){{ end }}`

const defaultEmailBody = `{{ if .Test }}This is a test message from moat notifications test.

{{ end }}{{ range .Alerts }}Scenario: {{ .Scenario }}
Source:   {{ .Scope }} {{ .Value }}
Events:   {{ .EventsCount }}, {{ rfc3339 .Start }} to {{ rfc3339 .Stop }}
{{ range .Decisions }}Decision: {{ .Type }} {{ .Value }} for {{ duration .Duration }}{{ if .Simulated }} (simulated){{ end }}
{{ end }}{{ with .Context }}Context:
{{ range $k, $v := . }}  {{ $k }}: {{ json $v }}
{{ end }}{{ end }}{{ with .Lines }}Events sampled:
{{ range . }}  {{ . }}
{{ end }}{{ end }}
{{ end }}-- 
moat on {{ .Host }}
`

type email struct {
	host, addr, mode string
	user, pass       string
	tls              *tls.Config
	from             string
	to               []string
	header           string // From and To, rendered once
	subject, body    *tmpl
	target           string
}

func newEmail(n config.Notification) (*email, error) {
	s := n.SMTP
	e := &email{host: s.Host, mode: s.TLS, user: s.Username, pass: s.Password}
	if e.mode == "" {
		e.mode = "starttls"
	}
	port := s.Port
	if port == 0 {
		port = map[string]int{"starttls": 587, "tls": 465, "none": 25}[e.mode]
	}
	e.addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, &keyError{key: "smtp.password_file", err: err}
		}
		e.pass = strings.TrimRight(string(b), "\r\n")
	}
	e.tls = &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, &keyError{key: "smtp.ca_file", err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &keyError{key: "smtp.ca_file", err: errors.New("no PEM certificate in it")}
		}
		e.tls.RootCAs = pool
	}
	from, err := mail.ParseAddress(n.From)
	if err != nil {
		return nil, &keyError{key: "from", err: err}
	}
	e.from = from.Address
	var tos []string
	for _, t := range n.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, &keyError{key: "to", err: err}
		}
		e.to = append(e.to, a.Address)
		tos = append(tos, a.String())
	}
	e.header = "From: " + from.String() + "\r\nTo: " + strings.Join(tos, ", ") + "\r\n"
	if e.subject, err = compile("subject", n.Subject, defaultSubject); err != nil {
		return nil, err
	}
	if e.body, err = compile("body", n.Body, defaultEmailBody); err != nil {
		return nil, err
	}
	scheme := map[string]string{"starttls": "smtp+starttls", "tls": "smtps", "none": "smtp"}[e.mode]
	user := ""
	if e.user != "" {
		user = e.user + "@"
	}
	e.target = fmt.Sprintf("%s://%s%s -> %s", scheme, user, e.addr, strings.Join(e.to, ","))
	return e, nil
}

func (e *email) Target() string { return e.target }

func (e *email) Check(m *Message) error {
	_, err := e.compose(m)
	return err
}

// compose renders the message: headers, then the body in quoted-printable
// (long log lines, any bytes). The subject comes from log content too, so
// line breaks in it are flattened: they would start new headers.
func (e *email) compose(m *Message) ([]byte, error) {
	subj, err := e.subject.render(m, 4096)
	if err != nil {
		return nil, err
	}
	body, err := e.body.render(m, maxRender)
	if err != nil {
		return nil, err
	}
	flat := strings.Join(strings.Fields(string(subj)), " ")
	var b bytes.Buffer
	b.WriteString(e.header)
	b.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", flat) + "\r\n")
	b.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: <" + randomID() + "@" + sanitizeHost(m.Host) + ">\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("Auto-Submitted: auto-generated\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write(body); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func randomID() string {
	var r [12]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

func sanitizeHost(h string) string {
	if h == "" || strings.ContainsAny(h, "<>@ \r\n") {
		return "moat.invalid"
	}
	return h
}

func (e *email) Send(ctx context.Context, m *Message) error {
	msg, err := e.compose(m)
	if err != nil {
		return err
	}
	if err := e.send(ctx, msg); err != nil {
		return fmt.Errorf("email %s: %w", e.target, err)
	}
	return nil
}

func (e *email) send(ctx context.Context, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// net/smtp has no context: the deadline bounds every read and write,
	// and the context's end cuts a conversation that hangs.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if e.mode == "tls" {
		tc := tls.Client(conn, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if h, err := os.Hostname(); err == nil && h != "" {
		if err := c.Hello(h); err != nil {
			return err
		}
	}
	if e.mode == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS (set smtp tls: none only for a trusted relay)")
		}
		if err := c.StartTLS(e.tls); err != nil {
			return err
		}
	}
	if e.user != "" {
		// smtp.PlainAuth refuses to send the password in clear except
		// to a loopback server.
		if err := c.Auth(smtp.PlainAuth("", e.user, e.pass, e.host)); err != nil {
			return err
		}
	}
	if err := c.Mail(e.from); err != nil {
		return err
	}
	for _, to := range e.to {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
