package metrics

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moatsec/moat/internal/model"
)

// needChromium finds the browser or skips, loudly: the layout checks
// below cannot run without it.
func needChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: needs chromium (Debian package chromium)")
	}
	for _, bin := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(bin); err == nil {
			return p
		}
	}
	t.Skip("SKIPPED: chromium not found; apt-get install -y --no-install-recommends chromium")
	return ""
}

// browser starts a headless Chromium for the test and stops it, and
// removes its profile, when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := needChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		// Tests run as root, where Chromium's sandbox refuses to start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	// Generous: a loaded 2-core machine starts Chromium slowly.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 3*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	return bctx
}

// wideNames adds a scenario, a source and a channel whose names have no
// place to break, the usual cause of a page wider than a phone.
func wideNames(fx *dashFixture) {
	long := "crowdsecurity/" + strings.Repeat("very-long-scenario-name-", 8) + "x"
	fx.trend = append(fx.trend, trendPoint{ago: 40, scenario: long, alerts: 1, bans: 1})
	fx.status.counts.Alerts = append(fx.status.counts.Alerts, CreatedStat{Scenario: long, Origin: "local", Count: 2})
	v6 := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe")
	fx.status.decisions = append([]model.Decision{{Value: netip.PrefixFrom(v6, 128), Type: "ban", Origin: model.OriginLocal,
		Scenario: long, Reason: strings.Repeat("reason-without-spaces-", 10), Until: dashNow.Add(time.Hour)}}, fx.status.decisions...)
	fx.status.alerts = append([]model.Alert{{Scenario: long, Value: v6.String(), Source: netip.PrefixFrom(v6, 128), Stop: dashNow}}, fx.status.alerts...)
	fx.notify = append(fx.notify, NotifyStat{Name: strings.Repeat("channel", 20), Kind: "webhook", Sent: 1})
}

// TestDashboardBrowser loads the page in headless Chromium at a phone's
// width and at a desktop's, checks nothing overflows sideways, and reads
// the bans chart back from a screenshot: the bars of each scenario must
// have its color and heights in the ratio of the fixture's counts. The
// screenshots stay in $MOAT_SCREENSHOT_DIR when it is set.
func TestDashboardBrowser(t *testing.T) {
	ctx := browser(t)
	fx := newDashFixture()
	wideNames(&fx)
	srv := httptest.NewServer(fx.page(t))
	t.Cleanup(srv.Close)
	shotDir := os.Getenv("MOAT_SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = t.TempDir()
	}

	for _, vp := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"phone", 390, 844, true},
		{"desktop", 1280, 900, false},
	} {
		t.Run(vp.name, func(t *testing.T) {
			emu := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
			if vp.mobile {
				emu = append(emu, chromedp.EmulateMobile)
			}
			if err := chromedp.Do(ctx,
				chromedp.EmulateViewport(vp.width, vp.height, emu...),
				chromedp.Navigate(srv.URL+"/?range=1h"),
				chromedp.WaitVisible(chromedp.ID("chart-bans")),
			); err != nil {
				t.Fatalf("load page: %v", err)
			}
			sw, err := chromedp.Run(ctx, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
			if err != nil {
				t.Fatalf("scrollWidth: %v", err)
			}
			if sw > vp.width {
				t.Errorf("page is %dpx wide in a %dpx viewport: it scrolls sideways", sw, vp.width)
			}
			// The summaries come first: the cards are on the first screen.
			top, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("active-total").getBoundingClientRect().bottom`))
			if err != nil {
				t.Fatalf("cards: %v", err)
			}
			if top <= 0 || top > float64(vp.height) {
				t.Errorf("active decisions card ends at y=%v, want on the first %dpx", top, vp.height)
			}

			shot, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID("chart-bans")))
			if err != nil {
				t.Fatalf("chart screenshot: %v", err)
			}
			full, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("page screenshot: %v", err)
			}
			for name, b := range map[string][]byte{"chart": shot, "page": full} {
				p := filepath.Join(shotDir, "moat-dashboard-"+vp.name+"-"+name+".png")
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot %s", p)
			}
			img, err := png.Decode(bytes.NewReader(full))
			if err != nil {
				t.Fatalf("decode page screenshot: %v", err)
			}
			if w := img.Bounds().Dx(); w > int(vp.width) {
				t.Errorf("page screenshot is %dpx wide, want at most %d", w, vp.width)
			}
			checkBars(t, shot)
		})
	}
}

// checkBars finds the bars of the two colored scenarios in the chart
// screenshot and compares their heights with the fixture's counts in the
// last hour, oldest first.
func checkBars(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("decode chart screenshot: %v", err)
	}
	tests := []struct {
		scenario string
		color    [3]uint8
		counts   []float64
	}{
		{scenSSH, [3]uint8{0x2f, 0x6f, 0xde}, []float64{3, 6, 9}},
		{scenHTTP, [3]uint8{0xe4, 0x57, 0x2e}, []float64{4, 2}},
	}
	for _, tc := range tests {
		hs := barHeights(img, tc.color)
		t.Logf("%s: bar heights %v px for counts %v", tc.scenario, hs, tc.counts)
		if len(hs) != len(tc.counts) {
			t.Errorf("%s: %d bars of its color, want %d", tc.scenario, len(hs), len(tc.counts))
			continue
		}
		// Heights scale with the counts; a pixel of rounding at each end
		// of a bar is allowed.
		unit := hs[0] / tc.counts[0]
		if unit < 2 {
			t.Errorf("%s: %v px per ban, too small to read", tc.scenario, unit)
		}
		for i, c := range tc.counts {
			if want := c * unit; hs[i] < want-2.5 || hs[i] > want+2.5 {
				t.Errorf("%s: bar %d is %v px high, want %v (%v bans at %v px each)", tc.scenario, i, hs[i], want, c, unit)
			}
		}
	}
}

// barHeights returns the height in pixels of each run of adjacent columns
// holding pixels of color c, left to right.
func barHeights(img image.Image, c [3]uint8) []float64 {
	b := img.Bounds()
	col := make([]int, b.Dx())
	for x := b.Min.X; x < b.Max.X; x++ {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, c[0]) && near(g>>8, c[1]) && near(bl>>8, c[2]) {
				col[x-b.Min.X]++
			}
		}
	}
	var out []float64
	run := []int(nil)
	flush := func() {
		if len(run) > 0 {
			sort.Ints(run)
			// The tallest column: edge columns are blended with the
			// background and count fewer pixels.
			out = append(out, float64(run[len(run)-1]))
		}
		run = nil
	}
	for _, n := range col {
		if n == 0 {
			flush()
			continue
		}
		run = append(run, n)
	}
	flush()
	return out
}

func near(v uint32, want uint8) bool {
	d := int(v) - int(want)
	return d >= -12 && d <= 12
}
