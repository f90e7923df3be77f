package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

type fixedLogs []string

func (f fixedLogs) Recent() []string { return f }

// The support routes answer on the admin socket with the client's
// methods; a nil log source answers an empty list.
func TestSupportAdminRoutes(t *testing.T) {
	for _, logs := range []RecentLogs{fixedLogs{"level=WARN msg=one\n"}, nil} {
		mux := http.NewServeMux()
		SupportAdminRoutes(mux, logs)
		sock := filepath.Join(t.TempDir(), "moat.sock")
		ln, err := ListenUnix(sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener = ln
		srv.Start()
		c := NewClient(sock)
		dump, err := c.Goroutines(context.Background())
		if err != nil || !strings.Contains(string(dump), "goroutine ") || !strings.Contains(string(dump), "TestSupportAdminRoutes") {
			t.Fatalf("Goroutines = %.200q, %v", dump, err)
		}
		got, err := c.RecentLogs(context.Background())
		if err != nil || logs != nil && (len(got) != 1 || got[0] != "level=WARN msg=one\n") || logs == nil && len(got) != 0 {
			t.Fatalf("RecentLogs = %q, %v", got, err)
		}
		srv.Close()
	}
}
