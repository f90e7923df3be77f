package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/testutil"
)

// driftRig is a reconciler over a real nftables backend in a fresh netns,
// with the daemon's Verified hook logging to a buffer and a metrics server
// wired as moat run wires it.
type driftRig struct {
	ns   *testutil.NetNS
	rec  *enforce.Reconciler
	srv  *metrics.Server
	logs *syncBuffer
}

func newDriftRig(t *testing.T, verifyEvery time.Duration) *driftRig {
	ns := testutil.NewNetNS(t)
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	b, err := nft.Open(ctx, nft.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatalf("nft.Open: %v", err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	rec := enforce.NewReconciler(enforce.ReconcilerConfig{VerifyInterval: verifyEvery, Verified: logDrift(log)}, b)
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	srv, err := metrics.New(metrics.Config{Reconciler: reconcilerMetrics{rec}, NFTables: nftView(rec, []enforce.Backend{b}), ElementsInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	var ds []model.Decision
	for i := 1; i <= 5; i++ {
		ds = append(ds, model.Decision{ID: int64(i), Value: netip.MustParsePrefix(fmt.Sprintf("198.18.0.%d/32", i)),
			Type: "ban", Origin: model.OriginCLI, Until: time.Now().Add(time.Hour)})
	}
	if err := rec.Apply(ctx, ds, nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return &driftRig{ns: ns, rec: rec, srv: srv, logs: logs}
}

// series returns the value of one series of a scrape, "" when absent.
func (r *driftRig) series(t *testing.T, name string) string {
	t.Helper()
	rr := httptest.NewRecorder()
	r.srv.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	for l := range strings.Lines(rr.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+" "); ok {
			return v
		}
	}
	return ""
}

// waitSeries waits until a scrape shows want: element counts are refreshed
// in the background, at most every ten times as long as a count takes.
func (r *driftRig) waitSeries(t *testing.T, name, want string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s to be %s", name, want), func() bool {
		return r.series(t, name) == want
	})
}

const (
	ban4Elements  = `moat_kernel_elements{backend="nftables",set="ban4"}`
	repairMissing = `moat_kernel_repairs_total{backend="nftables",kind="missing"}`
	repairExtra   = `moat_kernel_repairs_total{backend="nftables",kind="extra"}`
	repairExpiry  = `moat_kernel_repairs_total{backend="nftables",kind="expiry"}`
)

// TestVerifyRepairsDriftVisibly changes moat's set behind its back: the
// element gauge shows what the kernel holds, not what moat wrote; the
// verify `moat verify` runs repairs it, counts each repair by kind and logs
// it.
func TestVerifyRepairsDriftVisibly(t *testing.T) {
	r := newDriftRig(t, 0)
	r.waitSeries(t, ban4Elements, "5")
	nftIn := func(args ...string) { r.ns.Run(t, append([]string{"nft"}, args...)...) }
	nftIn("delete", "element", "inet", "moat", "ban4", "{ 198.18.0.2, 198.18.0.4 }")
	nftIn("add", "element", "inet", "moat", "ban4", "{ 198.18.0.4 timeout 10m, 198.18.0.9 timeout 1h }")
	// The kernel holds 1, 3, 4 (expiry cut), 5 and 9 (not moat's): 5
	// elements, one of which moat never wanted and one missing.
	nftIn("delete", "element", "inet", "moat", "ban4", "{ 198.18.0.5 }")
	r.waitSeries(t, ban4Elements, "4")
	drift, err := r.rec.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if n := drift.Total(); n != 4 {
		t.Errorf("Verify found %d differences, want 4: %+v", n, drift)
	}
	r.waitSeries(t, ban4Elements, "5")
	for name, want := range map[string]string{repairMissing: "2", repairExtra: "1", repairExpiry: "1"} {
		if got := r.series(t, name); got != want {
			t.Errorf("%s = %q after verify, want %s", name, got, want)
		}
	}
	// Missing are listed in no particular order; the count and the other
	// kinds are exact.
	logged := r.logs.String()
	const head = `level=WARN msg="kernel drift repaired" backend=nftables missing=2 extra=1 expiry=1 sample="missing:198.18.0.`
	const tail = ` extra:198.18.0.9/32 expiry:198.18.0.4/32"` + "\n"
	if strings.Count(logged, "\n") != 1 || !strings.HasPrefix(logged, head) || !strings.HasSuffix(logged, tail) {
		t.Errorf("log:\n%s\nwant one line like:\n%s2/32 missing:198.18.0.5/32%s", logged, head, tail)
	}
	// A clean pass logs nothing and counts nothing.
	if _, err := r.rec.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.series(t, repairMissing); got != "2" || strings.Count(r.logs.String(), "\n") != 1 {
		t.Errorf("a clean verify changed the counter (%s) or logged:\n%s", got, r.logs.String())
	}
}

// TestPeriodicVerifyCountsRepairs: the periodic pass counts and logs as
// the on-demand one does.
func TestPeriodicVerifyCountsRepairs(t *testing.T) {
	r := newDriftRig(t, 50*time.Millisecond)
	r.ns.Run(t, "nft", "delete", "element", "inet", "moat", "ban4", "{ 198.18.0.3 }")
	r.waitSeries(t, repairMissing, "1")
	const want = `level=WARN msg="kernel drift repaired" backend=nftables missing=1 extra=0 expiry=0 sample=missing:198.18.0.3/32` + "\n"
	if got := r.logs.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}
