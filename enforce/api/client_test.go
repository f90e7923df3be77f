package api

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// fakeDaemon answers every request on a socket with body and header.
func fakeDaemon(t *testing.T, total, body string) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "moat-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if total != "" {
			w.Header().Set(TotalCountHeader, total)
		}
		w.Write([]byte(body))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock)
}

// EachDecision hands over what it reads and the total; a listing cut
// short, or one that is not an array, is an error, never a shorter list.
func TestEachDecision(t *testing.T) {
	for _, tc := range []struct {
		name, total, body string
		wantN, wantTotal  int
		wantErr           bool
	}{
		{"complete", "5", `[{"id":3},{"id":2}]` + "\n", 2, 5, false},
		{"empty", "0", "[]\n", 0, 0, false},
		{"null", "", "null\n", 0, -1, false},
		{"no total", "", `[{"id":1}]`, 1, -1, false},
		{"cut between decisions", "9", `[{"id":3},{"id":2}`, 2, 9, true},
		{"cut inside a decision", "9", `[{"id":3},{"id":`, 1, 9, true},
		{"not an array", "1", `{"id":1}`, 0, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeDaemon(t, tc.total, tc.body)
			n := 0
			total, err := c.EachDecision(context.Background(), nil, func(Decision) error { n++; return nil })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if n != tc.wantN || total != tc.wantTotal {
				t.Fatalf("%d decisions, total %d; want %d, %d", n, total, tc.wantN, tc.wantTotal)
			}
		})
	}
}
