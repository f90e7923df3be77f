package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// The real client: Debian's crowdsec 1.4.6. Its cscli capi register
// always calls https://api.crowdsec.net/, so the test runs everything of
// it in a namespace of its own holding only loopback, where that name
// resolves to 127.0.0.1 (ip netns exec mounts /etc/netns/NAME/hosts over
// /etc/hosts) and a test CA, trusted through SSL_CERT_FILE, signed the
// server's certificate. Nothing can phone home from there.
const (
	crowdsecBin = "/usr/bin/crowdsec"
	cscliBin    = "/usr/bin/cscli"
	csHub       = "/usr/share/crowdsec/hub"
	capiHost    = "api.crowdsec.net"
)

func TestRealCrowdsecCAPI(t *testing.T) {
	testutil.RequireRoot(t)
	for _, b := range []string{crowdsecBin, cscliBin, filepath.Join(csHub, ".index.json")} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("Debian's crowdsec is not installed (%v): apt-get install --no-install-recommends crowdsec", err)
		}
	}
	ns := testutil.NewNetNS(t)
	etc := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte("127.0.0.1 localhost "+capiHost+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, cert := testCA(t, dir)
	f := serveTLSIn(t, ns, cert)

	// Three moat reporters from two networks listed an attacker for
	// ssh-bf before crowdsec arrives; crowdsec pulls it.
	const listed, attacker = "45.77.8.8", "45.77.9.10"
	ctx := context.Background()
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.1.0.2"} {
		id := fmt.Sprint("seed", i)
		f.srv.db.Exec(f.srv.db.q(`INSERT INTO reporters (id, password_hash, enrolled, created_at) VALUES (?, 'x', 1, ?)`), id, time.Now().Unix())
		if err := f.srv.Ingest(ctx, id, netip.MustParseAddr(from), []Report{{netip.MustParseAddr(listed), sshBF}}); err != nil {
			t.Fatal(err)
		}
	}
	if res := f.evaluate(t); res.Listed != 1 {
		t.Fatalf("seed: %+v", res)
	}

	cfg := writeCrowdsec(t, dir)
	env := append(os.Environ(), "SSL_CERT_FILE="+caFile)
	try := func(args ...string) (string, error) {
		cmd := ns.Command(append([]string{cscliBin, "-c", cfg}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	cscli := func(args ...string) string {
		t.Helper()
		out, err := try(args...)
		if err != nil {
			t.Fatalf("cscli %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return out
	}
	cscli("capi", "register")
	var enrolled int
	f.srv.db.QueryRow(`SELECT count(*) FROM reporters WHERE enrolled = 0`).Scan(&enrolled)
	if enrolled != 1 {
		t.Fatalf("after cscli capi register: %d unenrolled reporters, want the agent's", enrolled)
	}
	cscli("console", "enroll", "enrol-secret")
	f.srv.db.QueryRow(`SELECT count(*) FROM reporters WHERE enrolled = 0`).Scan(&enrolled)
	if enrolled != 0 {
		t.Fatalf("after cscli console enroll: %d reporters still unenrolled", enrolled)
	}
	cscli("machines", "add", "agent", "--auto", "-f", filepath.Join(dir, "local_api_credentials.yaml"), "--force")
	startCrowdsec(t, ns, cfg, env, filepath.Join(dir, "crowdsec.out"))

	// Pull: the listed address reaches crowdsec's decisions, origin CAPI.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := try("decisions", "list", "-a", "-o", "json")
		if err == nil && strings.Contains(out, listed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crowdsec never pulled %s: %v: %s", listed, err, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("crowdsec pulled %s from the community server", listed)

	// Push: an SSH brute force against the agent becomes a signal.
	deadline = time.Now().Add(90 * time.Second)
	for n := 0; ; n++ {
		appendBruteForce(t, filepath.Join(dir, "auth.log"), attacker, n)
		time.Sleep(2 * time.Second)
		ex, err := f.srv.Explain(ctx, netip.MustParseAddr(attacker))
		if err != nil {
			t.Fatal(err)
		}
		if ex.Reports > 0 {
			t.Logf("crowdsec's signal for %s reached the server: %+v", attacker, ex)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no signal from crowdsec for %s", attacker)
		}
	}
}

// testCA writes a CA certificate to dir and returns its path with a
// server certificate for capiHost it signed.
func testCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: capiHost}, DNSNames: []string{capiHost},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveTLSIn serves a server over TLS on 127.0.0.1:443 inside ns.
func serveTLSIn(t *testing.T, ns *testutil.NetNS, cert tls.Certificate) *fixture {
	t.Helper()
	clk := &clock{t: time.Now()}
	srv, err := Open(context.Background(), Config{DSN: filepath.Join(t.TempDir(), "community.db"), EnrolmentToken: "enrol-secret",
		Now: time.Now, OnError: func(err error) { t.Log(err) }})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Logf("crowdsec: %s %s", r.Method, r.URL)
		srv.Handler().ServeHTTP(w, r)
	})}
	go hs.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &fixture{srv: srv, url: "https://" + capiHost, clk: clk}
}

// writeCrowdsec writes a crowdsec configuration under dir: its local API
// on 127.0.0.1:8080 with the online client on, the sshd parsers and the
// ssh-bf scenario linked from Debian's hub copy, an acquisition of
// dir/auth.log, no metrics.
func writeCrowdsec(t *testing.T, dir string) string {
	t.Helper()
	etc := filepath.Join(dir, "etc")
	for dst, src := range map[string]string{
		"parsers/s00-raw/syslog-logs.yaml":         "parsers/s00-raw/crowdsecurity/syslog-logs.yaml",
		"parsers/s01-parse/sshd-logs.yaml":         "parsers/s01-parse/crowdsecurity/sshd-logs.yaml",
		"parsers/s02-enrich/dateparse-enrich.yaml": "parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml",
		"scenarios/ssh-bf.yaml":                    "scenarios/crowdsecurity/ssh-bf.yaml",
	} {
		p := filepath.Join(etc, dst)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(filepath.Join(csHub, src), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/crowdsec/patterns", filepath.Join(etc, "patterns")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"data", "acquis.d"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	profiles, err := os.ReadFile("/etc/crowdsec/profiles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/simulation.yaml": "simulation: false\n",
		"etc/profiles.yaml":   string(profiles),
		"etc/console.yaml":    "share_manual_decisions: false\nshare_custom: true\nshare_tainted: true\nshare_context: false\n",
		"etc/acquis.yaml":     fmt.Sprintf("filenames:\n  - %s\nlabels:\n  type: syslog\n", filepath.Join(dir, "auth.log")),
		"auth.log":            "",
		// cscli capi register reads the file before it replaces it.
		"online_api_credentials.yaml": "url: https://" + capiHost + "/\nlogin: unregistered\npassword: unregistered\n",
		"config.yaml": fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: %[1]s/etc/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/etc/simulation.yaml
  hub_dir: %[2]s/
  index_path: %[2]s/.index.json
crowdsec_service:
  acquisition_path: %[1]s/etc/acquis.yaml
  acquisition_dir: %[1]s/acquis.d
  parser_routines: 1
cscli:
  output: human
  color: "no"
db_config:
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
api:
  client:
    insecure_skip_verify: false
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:8080
    profiles_path: %[1]s/etc/profiles.yaml
    console_path: %[1]s/etc/console.yaml
    online_client:
      credentials_path: %[1]s/online_api_credentials.yaml
    trusted_ips: [127.0.0.1]
prometheus:
  enabled: false
`, dir, csHub),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "config.yaml")
}

// startCrowdsec runs crowdsec (local API and agent) in ns until the test
// ends, killing its process group even on failure.
func startCrowdsec(t *testing.T, ns *testutil.NetNS, cfg string, env []string, outPath string) {
	t.Helper()
	cs := ns.Command(crowdsecBin, "-c", cfg)
	cs.Env = env
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	cs.Stdout, cs.Stderr = out, out
	cs.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cs.Process.Pid, syscall.SIGKILL)
		cs.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(outPath)
			t.Logf("crowdsec output:\n%s", b)
		}
	})
}

// appendBruteForce appends seven failed SSH logins from ip, in syslog form.
func appendBruteForce(t *testing.T, path, ip string, round int) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ts := time.Now().Format(time.Stamp)
	for i := range 7 {
		fmt.Fprintf(fh, "%s testhost sshd[%d]: Failed password for invalid user user%d from %s port %d ssh2\n", ts, 4000+round, i, ip, 40000+round*10+i)
	}
}
