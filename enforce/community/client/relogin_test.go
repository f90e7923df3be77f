package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/moatsec/moat/enforce/community/server"
)

// A server restart invalidates tokens (a new signing secret): the client
// logs in again on the 401 and its queued signals go through; while the
// server is down, a failed send keeps them queued.
func TestReloginAfterServerRestart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "community.db")
	open := func() *server.Server {
		s, err := server.Open(context.Background(), server.Config{DSN: db, Open: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	var h atomic.Pointer[http.Handler]
	set := func(v http.Handler) { h.Store(&v) }
	set(open().Handler())
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	defer hs.Close()
	creds, err := Register(context.Background(), hs.Client(), hs.URL, "", []byte("restart"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{Credentials: creds, HTTP: hs.Client(), Share: true})
	if err != nil {
		t.Fatal(err)
	}
	share := func(addr string) {
		a, ds := localBan(addr)
		cl.Share(a, ds)
	}
	share("45.77.50.1")
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	set(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) }))
	share("45.77.50.2")
	if err := cl.Flush(context.Background()); err == nil || cl.Stats().Queued != 1 {
		t.Fatalf("while down: %v, %+v", err, cl.Stats())
	}
	srv := open()
	set(srv.Handler())
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if st := cl.Stats(); st.Queued != 0 || st.Sent != 2 || srv.Stats().Signals != 1 {
		t.Fatalf("client %+v, server %+v", st, srv.Stats())
	}
}
