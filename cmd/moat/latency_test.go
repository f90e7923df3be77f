package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/testutil"
)

// TestDetectionToKernelLatency feeds 200 attackers through a tailed file
// and reads moat_detection_to_kernel_seconds: from the moment the line that
// completed each brute force was read to its ban being in the kernel.
func TestDetectionToKernelLatency(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: 200 attackers through a live daemon")
	}
	const attackers = 200
	victim := testutil.NewNetNS(t)
	host := newE2EHost(t, victim, nil)
	cfg, err := os.ReadFile(host.cfgPath)
	must(t, err)
	must(t, os.WriteFile(host.cfgPath, []byte(strings.Replace(string(cfg), "listen: \"\"\nmetrics:\n  listen: \"\"", "listen: \"\"\nmetrics:\n  listen: 127.0.0.1:9641", 1)), 0o644))
	d := startDaemon(t, host)

	for i := 0; i < attackers; i++ {
		ip := fmt.Sprintf("198.19.%d.%d", 1+i/250, 1+i%250)
		// One write per attacker: the sixth failure overflows ssh-bf.
		host.appendLines(t, repeatLine("Failed password for root from "+ip+" port 4000 ssh2", 6)...)
		time.Sleep(5 * time.Millisecond)
	}
	var sum metrics.Summary
	waitFor(t, 30*time.Second, fmt.Sprintf("%d bans in the histogram", attackers), func() bool {
		fams, err := parseMetricsText(strings.NewReader(scrape(t, victim, "http://127.0.0.1:9641/metrics")))
		must(t, err)
		sum = metrics.Summarize(fams)
		return sum.Latency.Count >= attackers
	})
	if sum.Latency.Count != attackers {
		t.Fatalf("histogram counted %v bans, want %d", sum.Latency.Count, attackers)
	}
	if n := strings.Count(nftSet(t, victim, "ban4"), "198.19."); n != attackers {
		t.Fatalf("%d attackers in the nft set, want %d\n%s", n, attackers, d.stderr.String())
	}
	t.Logf("detection to kernel over %d attackers (tailed file): p50 %.3f ms, p90 %.3f ms, p99 %.3f ms (histogram estimate)",
		attackers, sum.Latency.P50*1e3, sum.Latency.P90*1e3, sum.Latency.P99*1e3)
	// A sanity bound only: this runs beside the rest of the suite on two
	// cores; the target (p99 2 ms) is measured on a quiet machine.
	if sum.Latency.P99 > 0.5 {
		t.Fatalf("p99 %.1f ms: the path is broken, not just slow", sum.Latency.P99*1e3)
	}
}
