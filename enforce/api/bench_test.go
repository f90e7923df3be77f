package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// BenchmarkAPIAddDecisions posts one decision per request, as a script
// calling the admin API in a loop would.
func BenchmarkAPIAddDecisions(b *testing.B) {
	f := newFixture(b)
	c := f.admin.Client()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.postDecisions(b, c, fmt.Sprintf(`{"decisions":[{"value":"198.%d.%d.%d","duration":"1h"}]}`, 18+(i>>16)&1, byte(i>>8), byte(i)))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// postDecisions posts body to the admin API and fails unless it was taken.
func (f *fixture) postDecisions(b *testing.B, c *http.Client, body string) {
	resp, err := c.Post(f.admin.URL+"/v1/admin/decisions", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkStreamStartup1M times a bouncer's startup pull of a million
// active decisions and reports the response size.
func BenchmarkStreamStartup1M(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 200_000
	}
	f := newFixture(b)
	until := time.Now().Add(24 * time.Hour)
	for i := 0; i < n; i += 100000 {
		ds := make([]model.Decision, 0, 100000)
		for j := i; j < i+100000; j++ {
			a := netip.AddrFrom4([4]byte{198, 18 + byte(j>>16)&1, byte(j >> 8), byte(j)})
			if j >= 1<<17 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)})
			}
			ds = append(ds, model.Decision{Value: netip.PrefixFrom(a, a.BitLen()), Type: "ban", Origin: model.OriginList, Scenario: "crowdsecurity/ssh-bf", Until: until})
		}
		if err := f.st.InsertDecisions(context.Background(), ds); err != nil {
			b.Fatal(err)
		}
	}
	key := f.bouncerKey(b, "fw")
	var size int64
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, f.lapi.URL+"/v1/decisions/stream?startup=true", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := f.lapi.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		size, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("status %d: %v", resp.StatusCode, err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/response")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/startup")
}
