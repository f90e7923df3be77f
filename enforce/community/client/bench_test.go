package client

import (
	"context"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/community/server"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// BenchmarkPullStartup measures a host's startup pull of an unchanged
// 10000-address list (the request, and the comparison with the decisions
// held); the first pull, which adds them to its SQLite store through the
// decision service, is logged.
func BenchmarkPullStartup(b *testing.B) {
	c := startServer(b, "")
	ctx := context.Background()
	for i, from := range []string{"127.0.0.31", "127.0.0.32", "127.1.0.33"} {
		h := newHost(b, c, from, true, false)
		var reps []server.Report
		for x := range 10000 {
			reps = append(reps, server.Report{Addr: netip.AddrFrom4([4]byte{45, 2, byte(x >> 8), byte(x)}), Scenario: sshBF})
		}
		if err := c.srv.Ingest(ctx, h.cl.cfg.Credentials.MachineID, netip.MustParseAddr(from), reps); err != nil {
			b.Fatal(i, err)
		}
	}
	if res, err := c.srv.Evaluate(ctx); err != nil || res.Listed != 10000 {
		b.Fatalf("%+v %v", res, err)
	}
	h := newHost(b, c, "127.2.0.34", false, true)
	start := time.Now()
	if err := h.cl.Pull(ctx, true); err != nil {
		b.Fatal(err)
	}
	b.Logf("first startup pull, 10000 decisions added: %s", time.Since(start))
	b.ResetTimer()
	for range b.N {
		if err := h.cl.Pull(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n, err := h.st.ListDecisions(ctx, store.Filter{Origin: string(model.OriginCommunity)})
	if err != nil || len(n) != 10000 {
		b.Fatalf("%d community decisions, %v", len(n), err)
	}
}

// Everything goes through the configured proxy.
func TestProxy(t *testing.T) {
	c := startServer(t, "")
	var seen atomic.Int64
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		seen.Add(1)
		r.Out.URL.Scheme, r.Out.URL.Host = "http", r.In.URL.Host
	}})
	defer proxy.Close()
	hc, err := NewHTTPClient(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Register(context.Background(), hc, c.url, token, []byte("proxied"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{Credentials: creds, HTTP: hc, Share: true})
	if err != nil {
		t.Fatal(err)
	}
	a, ds := localBan("45.77.30.30")
	cl.Share(a, ds)
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := seen.Load(), int64(len(c.requests())); got != want || got < 5 {
		t.Fatalf("proxy saw %d requests, server %d", got, want)
	}
	for _, bad := range []string{"ftp://x:1", "://"} {
		if _, err := NewHTTPClient(bad); err == nil {
			t.Errorf("proxy %q accepted", bad)
		}
	}
}
