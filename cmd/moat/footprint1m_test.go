package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

// maxMillionRSSKB bounds the daemon's resident memory with a million
// stored bans in nftables, after a metrics scrape: measured 1.27-1.41 GB
// before scrapes counted in SQLite, 192-230 MB after, 155-178 MB once the
// reconciler's desired set and the store's count index left Go maps.
const maxMillionRSSKB = 190 << 10

// TestMillionBansRSS runs moat on a store of a million bans and checks
// its resident memory once the load is done and a scrape was served.
func TestMillionBansRSS(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: loads a million bans into a daemon")
	}
	const n = 1_000_000
	ns := testutil.NewNetNS(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "state", store.FileName)
	st, err := store.Open(context.Background(), path, store.Options{})
	must(t, err)
	must(t, st.Close())
	db, err := sql.Open("sqlite3", "file:"+path)
	must(t, err)
	_, err = db.Exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
		INSERT INTO decisions (id, value, scope, type, origin, scenario, reason, simulated, created_at, until, seq)
		SELECT i, '100.' || (64 + (i >> 16)) || '.' || ((i >> 8) & 255) || '.' || (i & 255), 'Ip', 'ban', 'list', 'seed', '', 0, ?, ?, 1 FROM c`,
		n, time.Now().UnixNano(), time.Now().Add(4*time.Hour).UnixNano())
	must(t, err)
	must(t, db.Close())
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %[1]s/state\napi:\n  socket: %[1]s/moat.sock\nhub:\n  data: %[1]s/data\n", dir)), 0o644))
	d := startDaemonIn(t, ns, cfg)
	pid := d.cmd.Process.Pid
	// The store's indexes load after "moat running"; a scrape counts the
	// active bans.
	time.Sleep(10 * time.Second)
	// Dialled here: http.Transport dials on a goroutine of its own, out
	// of the namespace.
	must(t, ns.Do(func() error {
		c, err := net.Dial("tcp", "127.0.0.1:9641")
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, c)
		return err
	}))
	// Idle trimming returns freed pages within a trim interval.
	time.Sleep(trimInterval + 5*time.Second)
	rss, peak := procKB(t, pid, "VmRSS"), procKB(t, pid, "VmHWM")
	t.Logf("a million bans: RSS %.1f MB (anonymous %.1f MB), peak %.1f MB", float64(rss)/1024, float64(procKB(t, pid, "RssAnon"))/1024, float64(peak)/1024)
	if rss > maxMillionRSSKB {
		t.Errorf("RSS %d kB with a million bans, want at most %d kB", rss, maxMillionRSSKB)
	}
}
