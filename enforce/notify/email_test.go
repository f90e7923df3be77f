package notify

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startSMTPServer runs testdata/smtpd.py (aiosmtpd, Debian's
// python3-aiosmtpd) on a loopback port and returns the port and the
// directory it writes messages to.
func startSMTPServer(t *testing.T, user, pass string, tlsArgs ...string) (int, string) {
	t.Helper()
	py := ""
	for _, cand := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(cand, "-c", "import aiosmtpd").Run() == nil {
			py = cand
			break
		}
	}
	if py == "" {
		t.Skip("SKIP: no python3 with aiosmtpd (apt-get install python3-aiosmtpd; make deps-test installs it)")
	}
	dir := t.TempDir()
	cmd := exec.Command(py, append([]string{"testdata/smtpd.py", dir, user, pass}, tlsArgs...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// aiosmtpd warns about AUTH without TLS (loopback here): shown only
	// when the test fails.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("smtpd.py stderr:\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("smtpd.py did not say its port: %v", err)
	}
	var port int
	if _, err := fmt.Sscan(line, &port); err != nil {
		t.Fatalf("smtpd.py said %q", line)
	}
	return port, dir
}

func waitMessage(t *testing.T, dir string) *mail.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		if len(files) > 0 {
			f, err := os.Open(files[0])
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			m, err := mail.ReadMessage(f)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the SMTP server received no message")
	return nil
}

// TestEmailThroughSMTP: an alert reaches a real SMTP server (aiosmtpd on
// loopback, AUTH PLAIN required) as a mail whose subject, recipients and
// body, with the sampled events' lines, are what the templates say.
func TestEmailThroughSMTP(t *testing.T) {
	port, dir := startSMTPServer(t, "moat", "s3cret pass")
	passFile := filepath.Join(t.TempDir(), "smtp.pass")
	if err := os.WriteFile(passFile, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %d, tls: none, username: moat, password_file: %s}
    from: "moat <moat@example.org>"
    to: [root@example.org, "Ops Team <ops@example.org>"]
    subject: "[moat] {{ .Alert.Value }} banned — {{ .Alert.Scenario }}"
`, port, passFile))
	run(t, m)
	a := testAlert("198.51.100.42")
	a.Events[5]["target_user"] = "Subject: injected\r\nBcc: x@example.org"
	a.Context = map[string][]string{"target_user": {"root", "admin", a.Events[5]["target_user"]}}
	m.Notify(a, sampleDecisions(time.Now()), []string{"mail"})
	msg := waitMessage(t, dir)

	h := msg.Header
	subj, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subj != "[moat] 198.51.100.42 banned — crowdsecurity/ssh-bf" {
		t.Fatalf("subject %q (%v)", subj, err)
	}
	if got := h.Get("X-Envelope-To"); got != "root@example.org,ops@example.org" {
		t.Fatalf("envelope recipients %q", got)
	}
	if h.Get("X-Envelope-From") != "moat@example.org" || h.Get("X-Authenticated") != "True" {
		t.Fatalf("envelope from %q, authenticated %q", h.Get("X-Envelope-From"), h.Get("X-Authenticated"))
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Name != "Ops Team" {
		t.Fatalf("To %v (%v)", to, err)
	}
	if h.Get("Bcc") != "" {
		t.Fatal("log content made a header")
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		"Scenario: crowdsecurity/ssh-bf",
		"Source:   Ip 198.51.100.42",
		"Decision: ban 198.51.100.23 for 4h0m0s",
		"log_type=ssh_failed-auth service=ssh source_ip=198.51.100.23 target_user=root",
		`target_user="Subject: injected\r\nBcc: x@example.org"`,
		// Values from log lines are quoted: one cannot forge a line.
		`  target_user: ["root","admin","Subject: injected\r\nBcc: x@example.org"]`,
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("body lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "log_type=ssh_failed-auth"); n != 6 {
		t.Fatalf("body has %d event lines, want 6:\n%s", n, text)
	}
	if st := m.Stats()[0]; st.Target != fmt.Sprintf("smtp://moat@127.0.0.1:%d -> root@example.org,ops@example.org", port) || strings.Contains(st.Target, "s3cret") {
		t.Fatalf("target %q", st.Target)
	}
}

// TestEmailBadPassword: a refused login fails the test send with the
// server's answer.
func TestEmailBadPassword(t *testing.T) {
	port, _ := startSMTPServer(t, "moat", "right")
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %d, tls: none, username: moat, password: wrong}
    from: moat@example.org
    to: [root@example.org]
`, port))
	err := m.Test(t.Context(), "mail")
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("Test = %v, want the server's 535", err)
	}
}

// TestEmailStartTLSRequired: starttls (the default) refuses a server that
// does not offer it rather than send the password in clear.
func TestEmailStartTLSRequired(t *testing.T) {
	port, _ := startSMTPServer(t, "moat", "pw")
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %d, username: moat, password: pw}
    from: moat@example.org
    to: [root@example.org]
`, port))
	err := m.Test(t.Context(), "mail")
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("Test = %v", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths.
func selfSigned(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat test smtp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// TestEmailTLSModes: STARTTLS and implicit TLS to a server whose
// certificate only ca_file vouches for; without ca_file the certificate
// is refused and nothing is sent.
func TestEmailTLSModes(t *testing.T) {
	for _, mode := range []string{"starttls", "tls"} {
		t.Run(mode, func(t *testing.T) {
			cert, key := selfSigned(t)
			port, dir := startSMTPServer(t, "moat", "pw", mode, cert, key)
			conf := `notifications:
  mail:
    kind: email
    smtp: {host: 127.0.0.1, port: %d, tls: %s, username: moat, password: pw%s}
    from: moat@example.org
    to: [root@example.org]
`
			m := channelsFrom(t, fmt.Sprintf(conf, port, mode, ", ca_file: "+cert))
			if err := m.Test(t.Context(), "mail"); err != nil {
				t.Fatal(err)
			}
			msg := waitMessage(t, dir)
			if msg.Header.Get("X-Authenticated") != "True" || !strings.Contains(msg.Header.Get("Subject"), "test") {
				t.Fatalf("headers %v", msg.Header)
			}
			untrusted := channelsFrom(t, fmt.Sprintf(conf, port, mode, ""))
			if err := untrusted.Test(t.Context(), "mail"); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("a self-signed certificate without ca_file: %v", err)
			}
		})
	}
}
