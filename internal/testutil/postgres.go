package testutil

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// PostgresBin is where Debian's postgresql-15 package puts the server's
// binaries (the TEST_DEBS list in the Makefile installs it).
const PostgresBin = "/usr/lib/postgresql/15/bin"

// PostgresPassword is the throwaway cluster superuser's password. Tests
// that check errors never repeat it can look for it.
const PostgresPassword = "moat-test-Secret-7f3a"

// Postgres is a throwaway PostgreSQL cluster that lives for one test: its
// data directory and unix socket sit in one temporary directory owned by
// the postgres user, and it listens on 127.0.0.1 on a port nobody else
// held when it started.
type Postgres struct {
	// Dir holds the cluster: data/, the socket and the server log.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Database is the database created for the test.
	Database string

	tb       testing.TB
	settings []string
}

// StartPostgres initialises a cluster, starts it, creates a database and
// returns it; settings are extra server settings ("fsync=on"). By default
// the cluster does not fsync: tests want speed, not durability, and pass
// "fsync=on" to measure what a real server would do. The cluster is
// stopped (immediate shutdown) and removed when the test ends, whether it
// passed or not. initdb refuses to run as root, so the cluster runs as the
// postgres user.
func StartPostgres(tb testing.TB, settings ...string) *Postgres {
	tb.Helper()
	RequireRoot(tb)
	if _, err := os.Stat(filepath.Join(PostgresBin, "initdb")); err != nil {
		tb.Fatalf("postgres: no server binaries (apt-get install postgresql): %v", err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		tb.Fatalf("postgres: no postgres user (apt-get install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not tb.TempDir: its parents are root's and closed to the postgres
	// user, and a unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "moat-pg-")
	if err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	p := &Postgres{Dir: dir, Database: "moat", tb: tb, settings: settings}
	tb.Cleanup(func() {
		// Registered before anything starts, so a failed start is
		// cleaned up too; stopping a stopped cluster is harmless. If
		// pg_ctl cannot stop it, the postmaster is killed outright.
		if err := p.stop(); err != nil {
			tb.Logf("postgres: %v; killing the postmaster", err)
			p.killPostmaster()
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("postgres: remove %s: %v", dir, err)
		}
	})
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	pw := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pw, []byte(PostgresPassword+"\n"), 0o600); err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	if err := os.Chown(pw, uid, gid); err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	// TCP clients must give the password (so tests see what a wrong one
	// does); the socket, used only to create the database, trusts.
	p.run("initdb", "-D", p.dataDir(), "-U", "postgres", "--pwfile="+pw,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	p.Port = freePort(tb)
	p.Start()
	p.run("createdb", "-h", dir, "-p", strconv.Itoa(p.Port), "-U", "postgres", p.Database)
	return p
}

// DSN is a URL reaching the test database over TCP as the superuser.
func (p *Postgres) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", PostgresPassword),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)),
		Path:     "/" + p.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Start starts the cluster (again, after Kill) on the same port and waits
// until it accepts connections.
func (p *Postgres) Start() {
	p.tb.Helper()
	opts := []string{"-c listen_addresses=127.0.0.1", "-p " + strconv.Itoa(p.Port), "-k " + p.Dir,
		"-c fsync=off", "-c full_page_writes=off", "-c max_connections=200"}
	for _, s := range p.settings {
		opts = append(opts, "-c "+s)
	}
	p.run("pg_ctl", "start", "-w", "-t", "60", "-D", p.dataDir(), "-l", filepath.Join(p.Dir, "server.log"), "-o", strings.Join(opts, " "))
}

// Kill stops the cluster at once, as a crash would (immediate shutdown:
// no checkpoint, clients cut off).
func (p *Postgres) Kill() {
	p.tb.Helper()
	if err := p.stop(); err != nil {
		p.tb.Fatalf("postgres: stop: %v", err)
	}
}

// Restart kills the cluster and starts it again, as after a crash.
func (p *Postgres) Restart() {
	p.tb.Helper()
	p.Kill()
	p.Start()
}

// killPostmaster sends SIGKILL to the postmaster postmaster.pid names.
func (p *Postgres) killPostmaster() {
	b, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return
	}
	if proc, err := os.FindProcess(pid); err == nil {
		proc.Kill()
	}
}

// Log is the server's log so far, for failure messages.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "server.log"))
	return string(b)
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }

func (p *Postgres) stop() error {
	if _, err := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); err != nil {
		return nil // not running
	}
	out, err := Command("runuser", "-u", "postgres", "--", filepath.Join(PostgresBin, "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", p.dataDir()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// run runs one of the server's binaries as the postgres user.
func (p *Postgres) run(name string, args ...string) {
	p.tb.Helper()
	cmd := Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(PostgresBin, name)}, args...)...)
	cmd.Dir = p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.tb.Fatalf("postgres: %s %s: %v: %s\n%s", name, strings.Join(args, " "), err, out, p.Log())
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("postgres: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
