package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// The daemon with two feeds and no kernel backend: a URL served on
// loopback and a file. Their entries become decisions of origin list named
// after the feed; the allowlisted entry and the one past max_entries are
// left out; an entry the URL drops is deleted at the next pull; a file
// that goes away keeps its decisions (fail static) and shows in moat
// status and the metrics as a failed pull.
func TestFeedsDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: waits for a feed's second pull (10s)")
	}
	dir := t.TempDir()
	var mu sync.Mutex
	list := "203.0.113.1\n203.0.113.2\n198.18.250.9\n"
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, list)
	}))
	defer hs.Close()
	fileFeed := filepath.Join(dir, "ranges.txt")
	must(t, os.WriteFile(fileFeed, []byte("198.51.100.0/24\n203.0.113.50\n"), 0o644))

	root := repoRoot(t)
	acquis := filepath.Join(dir, "acquis.d")
	must(t, os.MkdirAll(acquis, 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "moat.yaml")
	body := strings.Replace(daemonConfig(dir, root, acquis), "listen: 127.0.0.1:9641", "listen: "+metricsAddr, 1) +
		"  nftables: {enabled: false}\nallowlist: [198.18.250.0/24]\nfeeds:\n" +
		"  - {name: partner, url: \"" + hs.URL + "/list.txt\", interval: 10s, duration: 1h}\n" +
		"  - {name: ranges, file: " + fileFeed + ", interval: 10s, duration: 1h, max_entries: 1}\n"
	must(t, os.WriteFile(cfg, []byte(body), 0o644))
	startPlainDaemon(t, cfg)

	listed := func() map[string]string {
		var o, e strings.Builder
		if code := run([]string{"--config", cfg, "-o", "json", "decisions", "list", "--origin", "list"}, strings.NewReader(""), &o, &e); code != 0 {
			t.Fatalf("decisions list: %d %s", code, e.String())
		}
		var ds []api.Decision
		must(t, json.Unmarshal([]byte(o.String()), &ds))
		out := map[string]string{}
		for _, d := range ds {
			out[d.Value] = d.Scenario
		}
		return out
	}
	want := map[string]string{"203.0.113.1": "partner", "203.0.113.2": "partner", "198.51.100.0/24": "ranges"}
	waitFor(t, 30*time.Second, "both feeds' decisions", func() bool { return len(listed()) == len(want) })
	if got := listed(); !maps.Equal(got, want) {
		t.Fatalf("decisions of origin list %v, want %v", got, want)
	}

	mu.Lock()
	list = "203.0.113.1\n198.18.250.9\n"
	mu.Unlock()
	must(t, os.Remove(fileFeed))
	delete(want, "203.0.113.2")
	waitFor(t, 60*time.Second, "the dropped entry's decision to go", func() bool { return len(listed()) == len(want) })
	if got := listed(); !maps.Equal(got, want) {
		t.Fatalf("after the feeds changed: %v, want %v", got, want)
	}

	status := func() api.Status {
		var o, e strings.Builder
		if code := run([]string{"--config", cfg, "-o", "json", "status"}, strings.NewReader(""), &o, &e); code != 0 {
			t.Fatalf("status: %d %s", code, e.String())
		}
		var st api.Status
		must(t, json.Unmarshal([]byte(o.String()), &st))
		return st
	}
	waitFor(t, 30*time.Second, "the file feed's failed pull in moat status", func() bool {
		return status().Counters["feed_pulls_failed"] > 0
	})
	feeds := map[string]api.Source{}
	for _, s := range status().Sources {
		if s.Kind == "feed" {
			feeds[s.Name] = s
		}
	}
	if p := feeds["partner"]; p.Lines != 1 || p.Error != "" {
		t.Errorf("status of partner: %+v, want 1 decision held, no error", p)
	}
	if r := feeds["ranges"]; r.Lines != 1 || !strings.Contains(r.Error, "ranges.txt") {
		t.Errorf("status of ranges: %+v, want 1 decision held and the missing file", r)
	}
	var o, e strings.Builder
	run([]string{"--config", cfg, "-o", "table", "status"}, strings.NewReader(""), &o, &e)
	if !strings.Contains(o.String(), "feed") || !strings.Contains(o.String(), "partner") {
		t.Errorf("status table lacks the feeds:\n%s", o.String())
	}
	scrape := grepLines(httpGet(t, "http://"+metricsAddr+"/metrics"), "moat_feed_")
	for _, line := range []string{`moat_feed_decisions{feed="partner"} 1`, `moat_feed_allowlisted_entries{feed="partner"} 1`, `moat_feed_capped_entries{feed="ranges"} 1`} {
		if !strings.Contains(scrape, line) {
			t.Errorf("metrics lack %s:\n%s", line, scrape)
		}
	}
	if !slices.ContainsFunc(strings.Split(scrape, "\n"), func(l string) bool {
		return strings.HasPrefix(l, `moat_feed_pull_errors_total{feed="ranges"} `) && !strings.HasSuffix(l, " 0")
	}) {
		t.Errorf("metrics lack the file feed's failed pull:\n%s", scrape)
	}
}
