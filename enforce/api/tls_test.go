package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert issues a certificate for name, signed by parent (self-signed
// when parent is nil), and writes it and its key as PEM under dir.
func testCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return cert, key, cp, kp
}

func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPath, _ := testCert(t, dir, "ca", nil, nil, true)
	_, _, srvCert, srvKey := testCert(t, dir, "server", ca, caKey, false)
	_, _, cliCert, cliKey := testCert(t, dir, "client", ca, caKey, false)
	other, otherKey, _, _ := testCert(t, dir, "other-ca", nil, nil, true)
	_, _, strangerCert, strangerKey := testCert(t, dir, "stranger", other, otherKey, false)

	for _, tc := range []struct {
		name, cert, key, ca, msg string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), srvKey, "", "no such file"},
		{"key of another cert", srvCert, cliKey, "", "private key does not match"},
		{"missing client CA", srvCert, srvKey, filepath.Join(dir, "nope.pem"), "client_ca"},
		{"client CA not PEM", srvCert, srvKey, filepath.Join(dir, "server.key"), "no PEM certificate"},
	} {
		if _, err := ServerTLS(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.msg)
		}
	}

	m := newMachineFixture(t)
	tc, err := ServerTLS(srvCert, srvKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.srv.MachineHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := func(cert, key string) *http.Client {
		c := &tls.Config{RootCAs: roots}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 5 * time.Second}
	}
	url := "https://" + ln.Addr().String() + "/v1/heartbeat"
	for _, c := range []struct {
		name, cert, key string
		ok              bool
	}{
		{"client certificate of the CA", cliCert, cliKey, true},
		{"no client certificate", "", "", false},
		{"certificate of another CA", strangerCert, strangerKey, false},
	} {
		resp, err := client(c.cert, c.key).Get(url)
		if c.ok {
			// Through TLS, then refused for want of a token.
			if err != nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: %v %v, want a 401 over mutual TLS", c.name, resp, err)
			}
		} else if err == nil {
			t.Errorf("%s: answered %d, want the handshake refused", c.name, resp.StatusCode)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}
