package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
)

// RecentLogs is what the support endpoint reads of the daemon's logger:
// its latest warnings and errors, oldest first, one line each.
type RecentLogs interface {
	Recent() []string
}

// MaxGoroutineDump bounds the goroutine dump a client reads.
const MaxGoroutineDump = 32 << 20

// SupportAdminRoutes adds what moat support dump asks the daemon for:
// GET /v1/admin/support/goroutines, every goroutine's stack as Go's
// runtime prints them (pprof debug=2), and GET /v1/admin/support/logs,
// the recent warnings and errors logs keeps (nil: none kept). They are
// routes of the admin socket only, never of a TCP listener: a stack dump
// tells how the daemon is built and what it is doing.
func SupportAdminRoutes(mux *http.ServeMux, logs RecentLogs) {
	mux.Handle("GET /v1/admin/support/goroutines", handle(func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		return pprof.Lookup("goroutine").WriteTo(w, 2)
	}))
	mux.Handle("GET /v1/admin/support/logs", handle(func(w http.ResponseWriter, _ *http.Request) error {
		out := []string{}
		if logs != nil {
			out = append(out, logs.Recent()...)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}))
}

// Goroutines returns the daemon's goroutine dump, at most
// MaxGoroutineDump bytes.
func (c *Client) Goroutines(ctx context.Context) ([]byte, error) {
	const path = "/v1/admin/support/goroutines"
	resp, err := c.open(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxGoroutineDump))
	if err != nil {
		return nil, fmt.Errorf("read %s answer: %w", path, err)
	}
	return b, nil
}

// RecentLogs returns the daemon's latest warnings and errors.
func (c *Client) RecentLogs(ctx context.Context) ([]string, error) {
	var out []string
	err := c.do(ctx, http.MethodGet, "/v1/admin/support/logs", nil, nil, &out)
	return out, err
}
