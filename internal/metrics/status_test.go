package metrics

import (
	"context"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

func TestStatusPage(t *testing.T) {
	s, w := newTestServer(t)
	base := serve(t, s)
	w.ban("198.18.0.7", "crowdsecurity/ssh-bf", 2*time.Millisecond, s.Latency().Applied)
	w.ban("198.18.0.8", "crowdsecurity/ssh-slow-bf", 3*time.Millisecond, s.Latency().Applied)

	tests := []struct {
		name       string
		query      string
		code       int
		want, deny []string
	}{
		{name: "all", code: 200,
			want: []string{"198.18.0.7/32", "198.18.0.8/32", "crowdsecurity/ssh-bf", "/var/log/auth.log", "DOWN", "ban4"}},
		{name: "search hit", query: "?ip=198.18.0.8", code: 200,
			want: []string{"198.18.0.8/32"}, deny: []string{"<td>198.18.0.7/32</td>"}},
		{name: "search miss", query: "?ip=198.18.1.1", code: 200,
			want: []string{"no active decision covers 198.18.1.1"}, deny: []string{"<td>198.18.0.7/32</td>"}},
		{name: "bad query is escaped", query: "?ip=%3Cscript%3E", code: http.StatusBadRequest,
			want: []string{"is not an IP address", "&lt;script&gt;"}, deny: []string{"<script>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, base+"/"+tc.query)
			if code != tc.code {
				t.Errorf("status %d, want %d", code, tc.code)
			}
			page := string(body)
			for _, s := range tc.want {
				if !strings.Contains(page, s) && !strings.Contains(html.UnescapeString(page), s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.deny {
				if strings.Contains(page, s) {
					t.Errorf("page has %q", s)
				}
			}
			// Works offline: nothing is loaded from another host.
			if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(page); m != "" {
				t.Errorf("page loads from elsewhere: %s", m)
			}
		})
	}
	if code, _ := get(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", code)
	}
}

// TestStatusPageDropsRate checks the drops-per-second figure, sampled by
// Serve, against a known packet rate.
func TestStatusPageDropsRate(t *testing.T) {
	s, w := newTestServer(t)
	_ = serve(t, s)
	start := time.Now()
	// Drop 1000 packets per sampled interval until two samples show a rate.
	deadline := start.Add(5 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		w.xdp.DroppedPackets += 100
		w.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		if r, ok := s.drops.rate(); ok && r > 0 {
			// 100 packets per ~5ms is ~20000/s; accept a wide band for a busy
			// machine, but it must be a rate, not a total.
			if r < 2000 || r > 40000 {
				t.Fatalf("drops rate %v/s, want about 20000/s", r)
			}
			return
		}
	}
	t.Fatal("no drops rate after 5s")
}

// TestStatusPageChromium loads the page in headless Chromium and checks the
// rendered DOM shows a ban made by the test; it leaves a screenshot in
// $MOAT_SCREENSHOT_DIR (or the test's temp dir).
func TestStatusPageChromium(t *testing.T) {
	testutil.RequireRoot(t)
	chromium := needTool(t, "chromium", "chromium")
	s, w := newTestServer(t)
	base := serve(t, s)
	d := w.ban("198.18.0.42", "crowdsecurity/ssh-bf", 2*time.Millisecond, s.Latency().Applied)

	shotDir := os.Getenv("MOAT_SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = t.TempDir()
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		common := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,900"}
		cmd := exec.CommandContext(ctx, chromium, append(common, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}

	dom := run("--dump-dom", base+"/")
	row := regexp.MustCompile(`<td>` + regexp.QuoteMeta(d.Value.String()) + `</td>\s*<td>ban</td>\s*<td>local</td>`)
	if !row.MatchString(dom) {
		t.Errorf("rendered DOM has no decision row for %s:\n%s", d.Value, dom)
	}
	if !strings.Contains(dom, `id="active-total">1<`) {
		t.Errorf("rendered DOM does not show 1 active decision")
	}

	searched := run("--dump-dom", base+"/?ip=198.18.0.42")
	if !row.MatchString(searched) {
		t.Errorf("search by IP lost the decision row")
	}

	shot := filepath.Join(shotDir, "moat-status.png")
	_ = os.Remove(shot)
	run("--screenshot="+shot, base+"/")
	st, err := os.Stat(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if st.Size() < 10_000 {
		t.Errorf("screenshot is %d bytes, too small to show the page", st.Size())
	}
	t.Logf("screenshot: %s (%d bytes)", shot, st.Size())
}
