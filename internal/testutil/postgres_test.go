package testutil

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestPostgresLifecycle: the cluster listens on its port, stops on Kill,
// comes back on Start, and is gone (process and files) once its test
// ends.
func TestPostgresLifecycle(t *testing.T) {
	RequireRoot(t)
	var dir string
	var port int
	t.Run("cluster", func(t *testing.T) {
		pg := StartPostgres(t)
		dir, port = pg.Dir, pg.Port
		dial := func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(pg.Port), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}
		if err := dial(); err != nil {
			t.Fatalf("started, but: %v", err)
		}
		pg.Kill()
		if dial() == nil {
			t.Fatal("still listening after Kill")
		}
		pg.Start()
		if err := dial(); err != nil {
			t.Fatalf("started again, but: %v", err)
		}
		pg.Restart()
		if err := dial(); err != nil {
			t.Fatalf("restarted, but: %v", err)
		}
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("cluster directory: %v, %v (want mode 0700)", st, err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still answers after the test", port)
	}
}
