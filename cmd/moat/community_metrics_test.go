package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The community metrics, scraped over HTTP from both ends: moat community
// serve on its --metrics-listen listener (signals accepted and refused by
// reason, reporters, listed addresses, pulls), and a daemon with the
// client on, on its metrics listener (signals sent, dropped, queue, pulls,
// pull errors, decisions held). Three seeded reporters from two networks
// list one address; the daemon pulls it.
func TestCommunityMetrics(t *testing.T) {
	const listed = "45.77.30.30"
	dir := t.TempDir()
	api, srvMetrics, hostMetrics := freeAddr(t), freeAddr(t), freeAddr(t)
	srvCfg := filepath.Join(dir, "server.yaml")
	must(t, os.WriteFile(srvCfg, []byte("state_dir: "+dir+"/server\n"), 0o644))
	tokFile := filepath.Join(dir, "token")
	must(t, os.WriteFile(tokFile, []byte("tok\n"), 0o600))
	cmd := exec.Command(os.Args[0], "--config", srvCfg, "community", "serve", "--enrolment-token-file", tokFile, "--listen", api,
		"--metrics-listen", srvMetrics, "--evaluate-interval", "200ms", "--db", filepath.Join(dir, "s.db"))
	cmd.Env = append(os.Environ(), "MOAT_TEST_MAIN=1")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("server output:\n%s", logs.String())
		}
	})
	waitFor(t, 20*time.Second, "the server to listen", func() bool { return strings.Contains(logs.String(), "community server listening") })
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.1.0.2"} {
		seedReporter(t, "http://"+api, from, filepath.Join(dir, fmt.Sprint("seed", i)), listed)
	}
	waitFor(t, 20*time.Second, "the address listed", func() bool {
		return seriesValue(getMetrics("http://"+srvMetrics+"/metrics"), "moat_community_server_listed_addresses") == "1"
	})

	root := repoRoot(t)
	acquis := filepath.Join(dir, "acquis.d")
	logPath := filepath.Join(dir, "auth.log")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte("source: file\nfilenames:\n  - "+logPath+"\nlabels:\n  type: syslog\n"), 0o644))
	cfg := filepath.Join(dir, "moat.yaml")
	body := strings.Replace(daemonConfig(dir, root, acquis), "listen: 127.0.0.1:9641", "listen: "+hostMetrics, 1) +
		"  nftables: {enabled: false}\ncommunity:\n  enabled: true\n  share: true\n  pull: true\n  push_interval: 1s\n"
	must(t, os.WriteFile(cfg, []byte(body), 0o644))
	mid := filepath.Join(dir, "machine-id")
	must(t, os.WriteFile(mid, []byte("1f0e0d0c0b0a09080706050403020100\n"), 0o644))
	var out, errb strings.Builder
	if code := run([]string{"--config", cfg, "community", "register", "--server", "http://" + api, "--token", "tok", "--machine-id", mid}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("register: %d %s%s", code, out.String(), errb.String())
	}
	startPlainDaemon(t, cfg)

	var host string
	waitFor(t, 30*time.Second, "the daemon's pull in its metrics", func() bool {
		host = getMetrics("http://" + hostMetrics + "/metrics")
		return seriesValue(host, "moat_community_decisions") == "1"
	})
	for name, want := range map[string]string{
		"moat_community_signals_sent_total":    "0",
		"moat_community_signals_dropped_total": "0",
		"moat_community_queue":                 "0",
		"moat_community_pulls_total":           "1",
		"moat_community_pull_errors_total":     "0",
		"moat_community_decisions":             "1",
	} {
		if got := seriesValue(host, name); got != want {
			t.Errorf("daemon %s = %q, want %s", name, got, want)
		}
	}
	srv := getMetrics("http://" + srvMetrics + "/metrics")
	for name, want := range map[string]string{
		"moat_community_server_signals_accepted_total":                       "3",
		`moat_community_server_signals_refused_total{reason="canary"}`:       "0",
		`moat_community_server_signals_refused_total{reason="malformed"}`:    "0",
		`moat_community_server_signals_refused_total{reason="rate_limited"}`: "0",
		`moat_community_server_signals_refused_total{reason="too_large"}`:    "0",
		"moat_community_server_reporters":                                    "4",
		"moat_community_server_listed_addresses":                             "1",
		"moat_community_server_pulls_total":                                  "1",
	} {
		if got := seriesValue(srv, name); got != want {
			t.Errorf("server %s = %q, want %s", name, got, want)
		}
	}
	if t.Failed() {
		t.Logf("daemon scrape:\n%s\nserver scrape:\n%s", host, srv)
	}
}

// freeAddr returns a loopback address:port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// getMetrics fetches url, or "" while it does not answer 200.
func getMetrics(url string) string {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// seriesValue is the value of the series named exactly name (with its
// labels) in an exposition, or "" when it is not there.
func seriesValue(exposition, name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		return ""
	}
	return m[1]
}
