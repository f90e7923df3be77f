package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// TestDaemonOnPostgres runs two daemons, in namespaces of their own, on
// one PostgreSQL database (store.dsn), as fleet server replicas do: a
// brute force seen by the first is stored there, the second enforces it
// from its start, and the first keeps it across a kill -9.
func TestDaemonOnPostgres(t *testing.T) {
	testutil.RequireRoot(t)
	pg := testutil.StartPostgres(t)
	// The daemons run in namespaces of their own, where 127.0.0.1 is not
	// the cluster's: they reach it by its unix socket.
	dsn := (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/" + pg.Database,
		RawQuery: url.Values{"host": {pg.Dir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}.Encode()}).String()
	host := func() *e2eHost {
		h := newE2EHost(t, testutil.NewNetNS(t), nil)
		f, err := os.OpenFile(h.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = fmt.Fprintf(f, "store:\n  dsn: %q\n", dsn)
		must(t, err)
		must(t, f.Close())
		return h
	}
	const attacker = "203.0.113.9"
	inSet := func(h *e2eHost) bool { return strings.Contains(nftSet(t, h.ns, "ban4"), attacker) }

	a := host()
	da := startDaemon(t, a)
	for range 6 {
		a.appendLines(t, "Failed password for root from "+attacker+" port 50022 ssh2")
	}
	waitFor(t, 10*time.Second, "the ban in the first daemon's set", func() bool { return inSet(a) })
	waitFor(t, 10*time.Second, "the ban stored", func() bool {
		return strings.Contains(moatIn(t, a.ns, "decisions", "list", "-o", "raw", "--config", a.cfgPath), attacker)
	})

	b := host()
	startDaemon(t, b)
	waitFor(t, 10*time.Second, "the second daemon enforcing the stored ban", func() bool { return inSet(b) })
	if out := moatIn(t, b.ns, "decisions", "list", "-o", "raw", "--config", b.cfgPath); strings.Count(out, attacker) != 1 {
		t.Errorf("the second daemon lists:\n%s", out)
	}

	if err := da.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("a killed daemon exited cleanly")
	}
	startDaemon(t, a)
	waitFor(t, 10*time.Second, "the ban after kill -9 and restart", func() bool { return inSet(a) })
	if out := moatIn(t, a.ns, "decisions", "list", "-o", "raw", "--config", a.cfgPath); strings.Count(out, attacker) != 1 {
		t.Errorf("after the restart the store lists:\n%s", out)
	}
}
