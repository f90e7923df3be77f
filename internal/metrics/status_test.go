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

func TestDropSamplerRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		samples []dropSample
		want    float64
		ok      bool
	}{
		{"none", nil, 0, false},
		{"one sample", []dropSample{{t0, 100}}, 0, false},
		{"steady", []dropSample{{t0, 100}, {t0.Add(2 * time.Second), 300}}, 100, true},
		{"last two only", []dropSample{{t0, 0}, {t0.Add(time.Second), 1000}, {t0.Add(6 * time.Second), 1500}}, 100, true},
		{"counter reset", []dropSample{{t0, 500}, {t0.Add(time.Second), 20}}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d dropSampler
			for _, s := range tc.samples {
				d.add(s)
			}
			got, ok := d.rate()
			if got != tc.want || ok != tc.ok {
				t.Errorf("rate() = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestServeSamplesDrops checks Serve feeds the sampler from the backends:
// the page's rate reflects packets dropped between two samples.
func TestServeSamplesDrops(t *testing.T) {
	s, w := newTestServer(t)
	base := serve(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		w.xdp.DroppedPackets += 100
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		if r, ok := s.drops.rate(); ok && r > 0 {
			_, body := get(t, base+"/")
			if regexp.MustCompile(`id="drops-rate">-<`).Match(body) {
				t.Error("page shows no drops rate while the sampler has one")
			}
			return
		}
	}
	t.Fatal("Serve never sampled a drops rate")
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
