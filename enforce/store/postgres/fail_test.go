package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/testutil"
)

// TestBadDSN: a DSN that cannot work fails Open with an error naming the
// server it meant, never its password.
func TestBadDSN(t *testing.T) {
	pg := testutil.StartPostgres(t)
	const secret = "hunter2-Wrong"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	live := fmt.Sprintf("127.0.0.1:%d", pg.Port)
	cases := []struct {
		name, dsn string
		want      []string // the error names these
	}{
		{"unparsable port", "postgres://postgres:" + secret + "@127.0.0.1:notaport/moat", []string{"127.0.0.1", "parse dsn"}},
		{"nothing listening", "postgres://postgres:" + secret + "@" + closed + "/moat?connect_timeout=5", []string{closed + "/moat", "connect"}},
		{"wrong password", "postgres://postgres:" + secret + "@" + live + "/moat?sslmode=disable", []string{live + "/moat", "password authentication failed"}},
		{"unknown database", strings.Replace(pg.DSN(), "/moat?", "/nosuchdb?", 1), []string{live + "/nosuchdb", "does not exist"}},
		{"key=value form", "host=127.0.0.1 port=" + closed[strings.LastIndex(closed, ":")+1:] + " user=postgres password=" + secret + " dbname=moat connect_timeout=5", []string{closed + "/moat"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(context.Background(), c.dsn, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
			for _, pw := range []string{secret, testutil.PostgresPassword} {
				if strings.Contains(msg, pw) {
					t.Errorf("error %q shows the password", msg)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer a logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDatabaseDown: with the server gone, calls fail naming it (never the
// password), a ban's IDs are refused rather than guessed, and once the
// server is back the pool and the listener recover on their own.
func TestDatabaseDown(t *testing.T) {
	pg := testutil.StartPostgres(t)
	var logs syncBuffer
	ctx := context.Background()
	s, err := Open(ctx, pg.DSN(), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other := open(t, pg.DSN())
	if err := s.InsertDecisions(ctx, decisions(3, 0, time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	pg.Kill()
	where := fmt.Sprintf("127.0.0.1:%d/moat", pg.Port)
	checkErr := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with the database down: no error", what)
			return
		}
		if !strings.Contains(err.Error(), where) || strings.Contains(err.Error(), testutil.PostgresPassword) {
			t.Errorf("%s: error %q should name %s and not the password", what, err, where)
		}
	}
	_, err = s.ListDecisions(ctx, store.Filter{})
	checkErr("ListDecisions", err)
	_, err = s.Expire(ctx, time.Now())
	checkErr("Expire", err)
	_, err = s.Counts(ctx)
	checkErr("Counts", err)
	// Past the block in hand, IDs cannot be reserved: the IDs handed out
	// are negative and the insert refuses them, with the reason.
	id := s.ReserveIDs(2 * idBlock)
	if id >= 0 {
		t.Fatalf("ReserveIDs with the database down: %d, want negative", id)
	}
	ds := decisions(1, 10, time.Now().Add(time.Hour))
	ds[0].ID = id
	err = s.InsertDecisions(ctx, ds)
	checkErr("InsertDecisions", err)
	if !errors.Is(err, errNoIDs) {
		t.Errorf("insert with unreserved IDs: %v, want errNoIDs", err)
	}

	pg.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Counts(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not recover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The listener reconnects (with backoff) and wakes waiters again.
	after, err := s.Seq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	woke := make(chan error, 1)
	go func() { _, err := s.Wait(wctx, after); woke <- err }()
	for {
		if err := other.InsertDecisions(ctx, decisions(1, 100, time.Now().Add(time.Hour))); err == nil {
			break
		}
		// other's pool may still hold a dead connection or two.
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-woke; err != nil {
		t.Fatalf("Wait after the server came back: %v\nlog:\n%s", err, logs.String())
	}
	if l := logs.String(); !strings.Contains(l, "reconnecting") || !strings.Contains(l, where) || strings.Contains(l, testutil.PostgresPassword) {
		t.Errorf("log should report the reconnect naming %s, without the password:\n%s", where, l)
	}
}

// TestSingleton: one replica at a time runs a job; another job runs
// beside it; the lock is free again when the job ends, even in error.
func TestSingleton(t *testing.T) {
	pg := testutil.StartPostgres(t)
	a, b := open(t, pg.DSN()), open(t, pg.DSN())
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	res := make(chan error, 1)
	go func() {
		ran, err := a.Singleton(ctx, JobExpire, func(context.Context) error {
			close(started)
			<-release
			return errors.New("sweep failed")
		})
		if !ran {
			err = errors.New("replica 1 did not run the job")
		}
		res <- err
	}()
	<-started
	for _, s := range []*Store{a, b} {
		ran, err := s.Singleton(ctx, JobExpire, func(context.Context) error { return nil })
		if ran || err != nil {
			t.Errorf("second run while the first holds the lock: ran %v, %v", ran, err)
		}
	}
	ran, err := b.Singleton(ctx, JobPrune, func(context.Context) error { return nil })
	if !ran || err != nil {
		t.Errorf("another job: ran %v, %v", ran, err)
	}
	close(release)
	if err := <-res; err == nil || err.Error() != "sweep failed" {
		t.Errorf("the job's error: %v", err)
	}
	ran, err = b.Singleton(ctx, JobExpire, func(context.Context) error { return nil })
	if !ran || err != nil {
		t.Errorf("after the first ended: ran %v, %v", ran, err)
	}
}
