package notify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
)

// hookServer is a real HTTP server on a loopback port that keeps the
// requests it gets.
type hookServer struct {
	url  string
	mu   sync.Mutex
	reqs []hookReq
	got  chan struct{}
}

type hookReq struct {
	method, path string
	header       http.Header
	body         []byte
}

func startHookServer(t *testing.T, status int) *hookServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookServer{url: "http://" + ln.Addr().String(), got: make(chan struct{}, 1<<16)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, hookReq{r.Method, r.URL.Path, r.Header.Clone(), body})
		h.mu.Unlock()
		w.WriteHeader(status)
		h.got <- struct{}{}
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookServer) requests() []hookReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookReq(nil), h.reqs...)
}

func channelsFrom(t *testing.T, yaml string) *Manager {
	t.Helper()
	cfg, err := config.Parse("moat.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	m, err := FromConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWebhookSlackBody: a Slack-style template reaches a real HTTP server
// as valid JSON, with the headers configured and log content escaped.
func TestWebhookSlackBody(t *testing.T) {
	h := startHookServer(t, http.StatusOK)
	m := channelsFrom(t, fmt.Sprintf(`notifications:
  slack:
    kind: webhook
    url: %s/services/T000/B000/secret
    headers:
      X-Token: abc
    body: |
      {"text": {{ printf "%%s banned %%s (%%s)" .Host .Alert.Value .Alert.Scenario | json }},
       "lines": {{ json .Alert.Lines }}}
`, h.url))
	run(t, m)
	a := testAlert("198.51.100.7")
	a.Events[0]["target_user"] = "evil\"\nuser"
	m.Notify(a, sampleDecisions(time.Now()), []string{"slack"})
	select {
	case <-h.got:
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	r := h.requests()[0]
	if r.method != "POST" || r.path != "/services/T000/B000/secret" || r.header.Get("X-Token") != "abc" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %v", r.method, r.path, r.header)
	}
	var got struct {
		Text  string   `json:"text"`
		Lines []string `json:"lines"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	host, _ := os.Hostname()
	if got.Text != host+" banned 198.51.100.7 (crowdsecurity/ssh-bf)" || len(got.Lines) != 6 || !strings.Contains(got.Lines[0], `target_user="evil\"\nuser"`) {
		t.Fatalf("body %+v", got)
	}
	if tg := m.Stats()[0].Target; tg != h.url+"/***" {
		t.Fatalf("target %q shows the secret path", tg)
	}
}

// TestWebhookErrorStatus: a non-2xx answer fails the attempt and the
// error names the status, not the URL's secret.
func TestWebhookErrorStatus(t *testing.T) {
	h := startHookServer(t, http.StatusTooManyRequests)
	m := channelsFrom(t, fmt.Sprintf("notifications:\n  hook: {kind: webhook, url: %s/token123}\n", h.url))
	err := m.Test(t.Context(), "hook")
	if err == nil || !strings.Contains(err.Error(), "status 429") || strings.Contains(err.Error(), "token123") {
		t.Fatalf("Test = %v", err)
	}
	if st := m.Stats()[0]; !strings.Contains(st.LastError, "429") {
		t.Fatalf("last error %q", st.LastError)
	}
}

// TestWebhookThroughput measures messages per second to a local webhook,
// one alert per message.
func TestWebhookThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: throughput measurement in -short mode")
	}
	h := startHookServer(t, http.StatusNoContent)
	m := channelsFrom(t, fmt.Sprintf("notifications:\n  hook: {kind: webhook, url: %s/hook, queue: 100000}\n", h.url))
	run(t, m)
	const n = 5000
	a, ds := testAlert("198.51.100.1"), sampleDecisions(time.Now())
	start := time.Now()
	for range n {
		m.Notify(a, ds, []string{"hook"})
	}
	for range n {
		select {
		case <-h.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d messages came", len(h.requests()), n)
		}
	}
	took := time.Since(start)
	st := m.Stats()[0]
	t.Logf("webhook throughput: %d messages in %s = %.0f messages/s (sent %d, dropped %d)", n, took.Round(time.Millisecond), n/took.Seconds(), st.Sent, st.Dropped)
	if st.Dropped != 0 {
		t.Fatalf("dropped %d", st.Dropped)
	}

	// Grouped: what is queued goes in one message, up to 100 alerts.
	g := channelsFrom(t, fmt.Sprintf("notifications:\n  grouped: {kind: webhook, url: %s/hook, queue: 100000, group_threshold: 100}\n", h.url))
	run(t, g)
	const alerts = 20000
	start = time.Now()
	for range alerts {
		g.Notify(a, ds, []string{"grouped"})
	}
	deadline := time.Now().Add(30 * time.Second)
	seen, got := n, 0
	for got < alerts {
		if time.Now().After(deadline) {
			t.Fatalf("grouped channel: %+v", g.Stats()[0])
		}
		reqs := h.requests()
		got += alertsReceived(t, reqs[seen:])
		seen = len(reqs)
		time.Sleep(time.Millisecond)
	}
	took = time.Since(start)
	gs := g.Stats()[0]
	t.Logf("webhook grouped: %d alerts in %d messages in %s = %.0f alerts/s", alerts, gs.Sent, took.Round(time.Millisecond), alerts/took.Seconds())
}

// alertsReceived counts the alerts in default-body webhook requests by
// their "scenario" keys: decoding every body would take the CPU the
// measurement is about.
func alertsReceived(t *testing.T, reqs []hookReq) int {
	t.Helper()
	total := 0
	for _, r := range reqs {
		if !json.Valid(r.body) {
			t.Fatalf("body is not JSON: %.200s", r.body)
		}
		total += bytes.Count(r.body, []byte(`"scenario":`))
	}
	return total
}

// TestFileRotates: the file channel writes one JSON line per alert and
// rotates by size, keeping max_files old files.
func TestFileRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "alerts.ndjson")
	m := channelsFrom(t, fmt.Sprintf("notifications:\n  siem: {kind: file, path: %s, max_size_mb: 1, max_files: 2, queue: 100000}\n", path))
	run(t, m)
	a, ds := testAlert("198.51.100.1"), sampleDecisions(time.Now())
	one, _ := json.Marshal(fileLine{Alert: newAlert(a, ds)})
	n := 3*(1<<20)/len(one) + 10
	for range n {
		m.Notify(a, ds, []string{"siem"})
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.Stats()[0].Sent+m.Stats()[0].Dropped < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := m.Stats()[0]; st.Sent != uint64(n) || st.Failed != 0 {
		t.Fatalf("stats %+v after %d alerts", st, n)
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Fatalf("%s is %d bytes, over max_size_mb", p, fi.Size())
		}
		checkNDJSON(t, p)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("%s.3 exists (max_files 2): %v", path, err)
	}
}

// TestFileMovedAway: a file moved away (logrotate) is followed by a new
// one at the configured path.
func TestFileMovedAway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.ndjson")
	m := channelsFrom(t, fmt.Sprintf("notifications:\n  siem: {kind: file, path: %s}\n", path))
	if err := m.Test(t.Context(), "siem"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := m.Test(t.Context(), "siem"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".old"} {
		if b, err := os.ReadFile(p); err != nil || strings.Count(string(b), "\n") != 1 {
			t.Fatalf("%s: %d lines, %v", p, strings.Count(string(b), "\n"), err)
		}
	}
}

func checkNDJSON(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		var l fileLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Value != "198.51.100.1" || l.Channel != "siem" || len(l.Decisions) != 1 {
			t.Fatalf("%s line %d: %v: %s", p, lines+1, err, sc.Bytes())
		}
		lines++
	}
	if lines == 0 {
		t.Fatalf("%s is empty", p)
	}
}
