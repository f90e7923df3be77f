package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/client"
	"github.com/moatsec/moat/enforce/community/server"
	"github.com/moatsec/moat/internal/model"
)

// The daemon with community.enabled, share and pull on, no kernel backend
// (so it runs in the test's own namespace and touches no firewall): at
// start it pulls an address three seeded reporters from two networks
// listed for a scenario it runs (moat/ssh-bf), which moat decisions list --origin community shows; an SSH
// brute force it detects becomes a signal holding only the allowed fields.
// Reporters' networks are their loopback source addresses (127.0.0.x and
// 127.1.0.x); the server trusts no forwarding header.
func TestCommunityDaemon(t *testing.T) {
	const listed, attacker = "45.77.20.20", "45.77.21.21"
	dir := t.TempDir()
	srv, err := server.Open(context.Background(), server.Config{DSN: filepath.Join(dir, "server.db"), EnrolmentToken: "tok"})
	must(t, err)
	defer srv.Close()
	var mu sync.Mutex
	var signals [][]byte
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/signals") {
			var raw json.RawMessage
			json.NewDecoder(r.Body).Decode(&raw)
			mu.Lock()
			signals = append(signals, raw)
			mu.Unlock()
			r.Body = readCloser(raw)
		}
		h.ServeHTTP(w, r)
	}))
	defer hs.Close()
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.1.0.2"} {
		seedReporter(t, hs.URL, from, filepath.Join(dir, fmt.Sprint("seed", i)), listed)
	}
	if res, err := srv.Evaluate(context.Background()); err != nil || res.Listed != 1 {
		t.Fatalf("seed: %+v %v", res, err)
	}

	root := repoRoot(t)
	acquis := filepath.Join(dir, "acquis.d")
	logPath := filepath.Join(dir, "auth.log")
	must(t, os.MkdirAll(acquis, 0o755))
	must(t, os.WriteFile(logPath, nil, 0o644))
	must(t, os.WriteFile(filepath.Join(acquis, "auth.yaml"), []byte("source: file\nfilenames:\n  - "+logPath+"\nlabels:\n  type: syslog\n"), 0o644))
	cfg := filepath.Join(dir, "moat.yaml")
	body := strings.Replace(daemonConfig(dir, root, acquis), "listen: 127.0.0.1:9641", `listen: ""`, 1) +
		"  nftables: {enabled: false}\ncommunity:\n  enabled: true\n  share: true\n  pull: true\n  push_interval: 1s\n"
	must(t, os.WriteFile(cfg, []byte(body), 0o644))
	mid := filepath.Join(dir, "machine-id")
	must(t, os.WriteFile(mid, []byte("0f0e0d0c0b0a09080706050403020100\n"), 0o644))
	var out, errb strings.Builder
	if code := run([]string{"--config", cfg, "community", "register", "--server", hs.URL, "--token", "tok", "--machine-id", mid}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("register: %d %s%s", code, out.String(), errb.String())
	}

	startPlainDaemon(t, cfg)
	waitFor(t, 30*time.Second, "the pulled address in moat decisions list --origin community", func() bool {
		var o, e strings.Builder
		run([]string{"--config", cfg, "-o", "raw", "decisions", "list", "--origin", "community"}, strings.NewReader(""), &o, &e)
		return strings.Contains(o.String(), listed)
	})
	waitFor(t, 60*time.Second, "the daemon's signal of "+attacker, func() bool {
		appendSSHFailures(t, logPath, attacker)
		ex, err := srv.Explain(context.Background(), netip.MustParseAddr(attacker))
		return err == nil && ex.Reports > 0
	})
	mu.Lock()
	defer mu.Unlock()
	for _, raw := range signals {
		var sigs []map[string]any
		must(t, json.Unmarshal(raw, &sigs))
		for _, s := range sigs {
			var keys []string
			for k := range s {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if want := []string{"created_at", "scenario", "scenario_hash", "scenario_version", "source", "start_at", "stop_at"}; !slices.Equal(keys, want) {
				t.Fatalf("signal keys %v, want %v", keys, want)
			}
		}
	}
}

// seedReporter registers a reporter from a loopback source address and
// has it share one local ban of addr.
func seedReporter(t *testing.T, url, from, dir, addr string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	creds, err := client.Register(context.Background(), hc, url, "tok", []byte("seed-"+from), dir)
	must(t, err)
	cl, err := client.New(client.Config{Credentials: creds, HTTP: hc, Share: true, Scenarios: func() []string { return []string{"moat/ssh-bf"} }})
	must(t, err)
	p := netip.MustParsePrefix(addr + "/32")
	cl.Share(model.Alert{Scenario: "moat/ssh-bf", Source: p, Start: time.Now(), Stop: time.Now()},
		[]model.Decision{{Value: p, Origin: model.OriginLocal, Type: "ban", Until: time.Now().Add(time.Hour)}})
	must(t, cl.Flush(context.Background()))
}

func appendSSHFailures(t *testing.T, path, ip string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	for i := range 8 {
		fmt.Fprintf(f, "%s victim sshd[%d]: Failed password for invalid user admin%d from %s port %d ssh2\n", time.Now().Format(time.Stamp), 5000+i, i, ip, 43000+i)
	}
}

type rawBody struct{ *strings.Reader }

func (rawBody) Close() error { return nil }

func readCloser(b []byte) rawBody { return rawBody{strings.NewReader(string(b))} }
