package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// TestLimits checks, on a real loopback listener, that a bouncer that
// stops reading is cut off and counted, that streams past the per-bouncer
// bound get 429 with a JSON message, that the store stays free for others
// meanwhile, and that paged listings stay byte for byte what encoding/json
// writes.
func TestLimits(t *testing.T) {
	f := newFixture(t)
	// Enough that a response outgrows the socket buffers.
	fillDecisions(t, f, 40_007)
	f.srv.WriteTimeout = 300 * time.Millisecond
	f.srv.MaxStreamsPerBouncer = 1
	f.srv.BulkWait = 100 * time.Millisecond
	f.srv.MaxBulk = 8
	key := f.bouncerKey(t, "fw")
	var others []string
	for i := range 6 {
		others = append(others, f.bouncerKey(t, fmt.Sprint("stalled", i)))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, f.srv.BouncerHandler()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + ln.Addr().String()

	// More stalled startup pulls than the store has reader connections.
	var stalled []net.Conn
	for _, other := range others {
		c, err := rawRequest(ln.Addr().String(), "/v1/decisions/stream?startup=true", other)
		if err != nil {
			t.Fatal(err)
		}
		// A small receive window so a few pages fill it.
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		stalled = append(stalled, c)
	}
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)

	code, body := get(t, base, "/v1/decisions/stream?startup=true", others[0])
	if code != http.StatusTooManyRequests {
		t.Errorf("a second stream of one bouncer: %d, want 429", code)
	}
	var msg errorBody
	if err := json.Unmarshal(body, &msg); err != nil || !strings.Contains(msg.Message, "retry later") {
		t.Errorf("refusal body of %d bytes: want a JSON message (%v)", len(body), err)
	}
	// The store is free for everyone else while those clients stall.
	c := NewClient("")
	c.base, c.hc = f.admin.URL, f.admin.Client()
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	ds, err := c.Decisions(lctx, url.Values{"ip": {"198.18.0.5"}})
	lcancel()
	if err != nil || len(ds) != 1 {
		t.Errorf("admin lookup while bouncers stall: %v, %v", ds, err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Stats().WriteTimeouts == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := f.srv.Stats(); st.WriteTimeouts == 0 || st.Refused == 0 {
		t.Errorf("stats %+v: want the stalled pulls cut off and the refusal counted", st)
	}

	// Paged responses, several pages long, are what encoding/json writes.
	recs, err := f.st.ListDecisions(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.srv.Now = func() time.Time { return now }
	lapi := make([]lapiDecision, 0, len(recs))
	admin := make([]Decision, 0, len(recs))
	for _, r := range recs {
		lapi = append(lapi, toLAPI(r.Decision, now))
		admin = append(admin, fromRecord(r))
	}
	for _, c := range []struct {
		base, path, key string
		want            any
	}{
		{base, "/v1/decisions", key, lapi},
		{base, "/v1/decisions?ip=203.0.113.9", key, []lapiDecision(nil)},
		{f.admin.URL, "/v1/admin/decisions", "", admin},
		{f.admin.URL, "/v1/admin/decisions?limit=1500", "", admin[:1500]},
		{f.admin.URL, "/v1/admin/decisions?ip=203.0.113.9", "", []Decision{}},
	} {
		var want bytes.Buffer
		json.NewEncoder(&want).Encode(c.want)
		code, got := get(t, c.base, c.path, c.key)
		if code != http.StatusOK || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: %d, %d bytes, want %d bytes as encoding/json writes them", c.path, code, len(got), want.Len())
		}
	}
}
