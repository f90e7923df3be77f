package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moatsec/moat/enforce/community/wire"
)

// The pulling clients run in a process of their own (the test binary
// again, selected by pullLoadEnv), as hosts do: the server's process then
// holds only the server, so its RSS and its scheduler are the server's,
// not those of 1,000 client goroutines and their buffers.
const (
	// pullLoadEnv names the file the parent writes for the child: the
	// server URL, the delta size it must see, then one login token a line.
	pullLoadEnv = "MOAT_COMMUNITY_PULL_LOAD"
	// pullLoadLine prefixes the child's JSON report.
	pullLoadLine = "moat-community-pull-load: "
)

const (
	pullLoadReporters = 1000
	pullLoadList      = 10000
	pullLoadDelta     = 300
)

// pullLoadReport is what the child measured.
type pullLoadReport struct {
	OK, Failed    int
	Wall          time.Duration
	P50, P99, Max time.Duration
	Err           string
}

// TestDeltaPullLoad serves a blocklist delta to 1,000 concurrent pulls
// over loopback: 1,000 enrolled reporters, a 10,000-address list of which
// 300 addresses changed (200 listed, 100 delisted) since every reporter's
// previous pull, and all 1,000 pull at once from the child process. Each
// pull must get exactly the delta. It reports pulls/s, p50/p99 latency and
// the server process's peak RSS, and asserts bounds generous enough for a
// shared 2-core machine: every pull answered, p99 under 20 s, the whole
// round under 30 s, peak RSS under 1 GiB.
func TestDeltaPullLoad(t *testing.T) {
	if os.Getenv(pullLoadEnv) != "" {
		pullLoadChild(t, os.Getenv(pullLoadEnv))
		return
	}
	if testing.Short() {
		t.Skip("SKIP (-short): 1,000 concurrent pulls on loopback (about 10 s)")
	}
	secret := []byte("pull-load-secret-0123456789abcdef")
	f := newFixture(t, "", func(c *Config) { c.Secret = secret })
	now := time.Now()
	cursor := now.Add(-time.Minute).UnixMilli()
	seedPullLoad(t, f.srv, now, cursor)

	// Tokens as login makes them; bcrypt-hashing 1,000 logins would
	// measure bcrypt, not the pull.
	var in strings.Builder
	fmt.Fprintf(&in, "%s\n%d\n", f.url, pullLoadDelta)
	for i := range pullLoadReporters {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"id": fmt.Sprint("load", i), "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "orig_iat": now.Unix()}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&in, tok)
	}
	spec := filepath.Join(t.TempDir(), "pull-load")
	if err := os.WriteFile(spec, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	before := f.srv.Stats().Pulls
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), pullLoadEnv+"="+spec)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pull clients: %v\n%s", err, out)
	}
	var rep pullLoadReport
	for l := range strings.Lines(string(out)) {
		if j, ok := strings.CutPrefix(strings.TrimSpace(l), pullLoadLine); ok {
			if err := json.Unmarshal([]byte(j), &rep); err != nil {
				t.Fatal(err)
			}
		}
	}
	hwm, rss := procStatusKB(t, "VmHWM"), procStatusKB(t, "VmRSS")
	rate := float64(rep.OK) / rep.Wall.Seconds()
	t.Logf("%d concurrent delta pulls (%d of a %d-address list each): %d ok, %d failed in %s: %.0f pulls/s, p50 %s, p99 %s, max %s; server process RSS %d MiB now, peak %d MiB",
		pullLoadReporters, pullLoadDelta, pullLoadList, rep.OK, rep.Failed, rep.Wall.Round(time.Millisecond), rate,
		rep.P50.Round(time.Millisecond), rep.P99.Round(time.Millisecond), rep.Max.Round(time.Millisecond), rss>>10, hwm>>10)
	if rep.Err != "" || rep.OK != pullLoadReporters || rep.Failed != 0 {
		t.Fatalf("pulls: %d ok, %d failed, want %d ok: %s\n%s", rep.OK, rep.Failed, pullLoadReporters, rep.Err, out)
	}
	if got := f.srv.Stats().Pulls - before; got != pullLoadReporters {
		t.Errorf("server counted %d pulls, want %d", got, pullLoadReporters)
	}
	if rep.P99 > 20*time.Second || rep.Wall > 30*time.Second {
		t.Errorf("p99 %s, round %s: want under 20 s and 30 s", rep.P99, rep.Wall)
	}
	if hwm > 1<<20 {
		t.Errorf("server process peak RSS %d MiB, want under 1 GiB", hwm>>10)
	}
}

// seedPullLoad writes the reporters and the list straight into the
// database: 1,000 enrolled reporters who last pulled at cursor, 10,000
// listed addresses changed before it, then 200 listed and 100 delisted
// after it (the delta).
func seedPullLoad(t *testing.T, srv *Server, now time.Time, cursor int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := srv.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.ExecContext(ctx, srv.db.q(q), args...); err != nil {
			t.Fatal(err)
		}
	}
	for i := range pullLoadReporters {
		exec(`INSERT INTO reporters (id, password_hash, enrolled, created_at, pull_cursor_ms) VALUES (?, 'x', 1, ?, ?)`, fmt.Sprint("load", i), now.Unix(), cursor)
	}
	exp := now.Add(24 * time.Hour).Unix()
	for x := range pullLoadList + 200 {
		a := netip.AddrFrom4([4]byte{45, 2, byte(x >> 8), byte(x)}).String()
		changed := cursor - 60000
		if x >= pullLoadList {
			changed = cursor + 1000 // listed since the last pull
		}
		deleted := 0
		if x < 100 {
			deleted, changed = 1, cursor+1000 // delisted since the last pull
		}
		exec(`INSERT INTO listed (addr, scenario, score, listed_at, expires_at, deleted, changed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)`, a, sshBF, 3.0, now.Unix(), exp, deleted, changed)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// procStatusKB reads a kB field of this process's /proc status.
func procStatusKB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// pullLoadChild is the client process: every token pulls the delta at
// once, each on its own connection, and the report goes to stdout.
func pullLoadChild(t *testing.T, spec string) {
	rep := pullLoadReport{}
	defer func() {
		j, _ := json.Marshal(rep)
		fmt.Println(pullLoadLine + string(j))
	}()
	fh, err := os.Open(spec)
	if err != nil {
		rep.Err = err.Error()
		return
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 {
		rep.Err = "short spec"
		return
	}
	url, tokens := lines[0], lines[2:]
	want, _ := strconv.Atoi(lines[1])
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: len(tokens), MaxConnsPerHost: 0}}
	lat := make([]time.Duration, len(tokens))
	errs := make([]error, len(tokens))
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i, tok := range tokens {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequest(http.MethodGet, url+"/v3/decisions/stream", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			ready.Done()
			<-start
			t0 := time.Now()
			errs[i] = pullOnce(hc, req, want)
			lat[i] = time.Since(t0)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	rep.Wall = time.Since(t0)
	for i, err := range errs {
		if err != nil {
			rep.Failed++
			if rep.Err == "" {
				rep.Err = fmt.Sprintf("pull %d: %v", i, err)
			}
			continue
		}
		rep.OK++
	}
	slices.Sort(lat)
	rep.P50, rep.P99, rep.Max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
}

// pullOnce pulls and checks the answer holds the whole delta.
func pullOnce(hc *http.Client, req *http.Request, want int) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var s wire.StreamV3
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return err
	}
	n := 0
	for _, g := range s.New {
		n += len(g.Decisions)
	}
	for _, g := range s.Deleted {
		n += len(g.Decisions)
	}
	if n != want {
		return fmt.Errorf("delta of %d addresses, want %d", n, want)
	}
	return nil
}
