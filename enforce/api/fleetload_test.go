package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/enforce/store/postgres"
	"github.com/moatsec/moat/internal/testutil"
	"github.com/moatsec/moat/packaging"
)

// The fleet load test's agents, like the bouncer load test's clients, run
// in a process of their own (the test binary again, selected by
// fleetLoadEnv): the parent holds the server, its store and the pushers,
// so its CPU time and push latencies are the server's.
const (
	// fleetLoadEnv is the server's loopback address; it selects the
	// agent role. fleetLoadStreamsEnv is how many streams to hold.
	fleetLoadEnv        = "MOAT_FLEET_LOAD_ADDR"
	fleetLoadStreamsEnv = "MOAT_FLEET_LOAD_STREAMS"
	// fleetLoadMachines share the streams: each opens streams/machines,
	// as logins cost a bcrypt each and the streams, not the identities,
	// are the load.
	fleetLoadMachines = 10
	fleetLoadPassword = "fleet-load-password"
)

// fleetAgentsReport is what the agent process counted: per stream, the
// distinct decisions it received.
type fleetAgentsReport struct {
	Streams   int   `json:"streams"`
	Failed    int64 `json:"failed"`
	MinDec    int   `json:"min_decisions"`
	MaxDec    int   `json:"max_decisions"`
	Bytes     int64 `json:"bytes"`
	CPUMillis int64 `json:"cpu_ms"`
	// FirstFailure is why the first stream to fail did.
	FirstFailure string `json:"first_failure,omitempty"`
	// CatchUpMillis is how long after the pushes ended every stream
	// held every decision (or the agents gave up waiting).
	CatchUpMillis int64 `json:"catch_up_ms"`
}

// fleetCatchUp bounds how long the agents wait, once the pushes ended,
// for every stream to hold every decision.
const fleetCatchUp = 90 * time.Second

// TestFleetStreamLoad pushes SSH alerts into a fleet server on PostgreSQL
// as fast as pushers holding a fixed number of requests in flight get
// them stored, while 1,000 agents hold the fleet decision stream open. It
// logs the alerts stored per second, the push latency, the CPU time of the
// server, of PostgreSQL and of the agents, and the store's commits, and
// checks that every stream received every decision once the pushes end.
func TestFleetStreamLoad(t *testing.T) {
	if addr := os.Getenv(fleetLoadEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(fleetLoadStreamsEnv))
		runFleetAgents(t, addr, n)
		return
	}
	streams, pushFor := 1000, 15*time.Second
	if testing.Short() {
		streams, pushFor = 200, 3*time.Second
	}
	// The same variable the agent process reads sets the streams here
	// too, to measure the push path with one stream beside a thousand.
	if n, err := strconv.Atoi(os.Getenv(fleetLoadStreamsEnv)); err == nil && n > 0 {
		streams = n
	}
	testutil.RequireRoot(t)
	raiseNoFile(t, 8192)
	pg := testutil.StartPostgres(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, pg.DSN(), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prof, err := profile.Parse("profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	changes := NewChanges()
	svc, err := decision.New(changes.Wrap(st), prof, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(svc, st, nil)
	srv.Changes = changes
	srv.MaxFleetStreams = streams + 16
	srv.MaxFleetStreamsPerMachine = streams/fleetLoadMachines + 1
	if err := srv.EnableMachines(MachineConfig{Store: st, TokenLifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i := range fleetLoadMachines {
		if err := st.AddMachine(ctx, fmt.Sprintf("agent-%02d", i), fleetLoadPassword, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddMachine(ctx, "pusher", fleetLoadPassword, true, ""); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln, srv.MachineHandler()) }()
	t.Cleanup(func() { stopSrv(); <-served })
	base := "http://" + ln.Addr().String()

	agents := startFleetAgents(t, ln.Addr().String(), streams)
	token := fleetLogin(t, http.DefaultClient, base, "pusher")

	pgBefore, cpuBefore := pgFigures(t, pg), selfCPU()
	start := time.Now()
	lat, stored := pushAlerts(t, base, token, pushFor)
	elapsed := time.Since(start)
	pgAfter, cpuAfter := pgFigures(t, pg), selfCPU()
	load, _ := os.ReadFile("/proc/loadavg")

	// Every stream must come to hold every decision: the agents wait for
	// it (within fleetCatchUp), then end and report.
	rep := agents.stop(t, stored)
	slices.Sort(lat)
	secs := elapsed.Seconds()
	t.Logf("fleet load, %d streams open: %d alerts stored in %.1f s, %.0f alerts/s (target ≥ 5,000); push of %d alerts: p50 %v, p99 %v, max %v",
		rep.Streams, stored, secs, float64(stored)/secs, fleetPushBatch, pctile(lat, 0.5), pctile(lat, 0.99), lat[len(lat)-1])
	t.Logf("what bounds it: server (this process) CPU %.0f%% of a core, PostgreSQL CPU %.0f%%, agents' process CPU %d ms in all; PostgreSQL %.0f transactions/s (the streams' reads among them), %.0f rows inserted/s; load average %s",
		100*(cpuAfter-cpuBefore).Seconds()/secs, 100*float64(pgAfter.cpuTicks-pgBefore.cpuTicks)/100/secs, rep.CPUMillis,
		float64(pgAfter.commits-pgBefore.commits)/secs, float64(pgAfter.inserted-pgBefore.inserted)/secs, strings.TrimSpace(string(load)))
	t.Logf("streams: %d, each received %d to %d distinct decisions (want %d) within %v of the last push, %d MiB in all, %d failed; server: %+v",
		rep.Streams, rep.MinDec, rep.MaxDec, stored, time.Duration(rep.CatchUpMillis)*time.Millisecond, rep.Bytes>>20, rep.Failed, srv.Stats())
	if rep.Streams != streams || rep.Failed > 0 {
		t.Errorf("%d of %d streams open at the end, %d failed, the first: %s", rep.Streams, streams, rep.Failed, rep.FirstFailure)
	}
	if rep.MinDec != int(stored) || rep.MaxDec != int(stored) {
		t.Errorf("streams received %d to %d decisions, want %d each", rep.MinDec, rep.MaxDec, stored)
	}
	// Gross failures only: the machine is shared, and the target is not
	// met today. Measured here (2 shared cores): 1 stream ~1,800 alerts/s
	// (PostgreSQL CPU-bound: each pushed alert is its own duplicate
	// check, profile decision and transaction); 1,000 streams ~120/s,
	// push p50 ~2.6 s, with neither the server nor PostgreSQL out of CPU:
	// the pushes wait for pooled connections behind the streams' shared
	// reads (see fleetFeed), and each alert is written to every stream.
	if stored == 0 || pctile(lat, 0.5) > 30*time.Second {
		t.Errorf("%d alerts stored, push p50 %v: the path is broken, not just slow", stored, pctile(lat, 0.5))
	}
}

// fleetPushBatch is the alerts a push carries and fleetPushers the pushes
// in flight: a busy fleet of agents pushing what they detect.
const (
	fleetPushBatch = 20
	fleetPushers   = 16
)

// pushAlerts pushes SSH brute-force alerts, each from a new address, from
// fleetPushers goroutines until d has passed, and returns each push's
// latency and the alerts the server took.
func pushAlerts(t *testing.T, base, token string, d time.Duration) ([]time.Duration, int64) {
	tr := &http.Transport{MaxIdleConnsPerHost: fleetPushers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		next, stored atomic.Int64
		mu           sync.Mutex
		lat          []time.Duration
		wg           sync.WaitGroup
		failed       atomic.Int64
	)
	// sshAlert is a push of one: its alert, to make pushes of many.
	one := strings.TrimSuffix(strings.TrimPrefix(sshAlert, "["), "]")
	end := time.Now().Add(d)
	for range fleetPushers {
		wg.Go(func() {
			var mine []time.Duration
			var body bytes.Buffer
			for time.Now().Before(end) {
				body.Reset()
				body.WriteByte('[')
				for k := range fleetPushBatch {
					n := next.Add(1)
					ip := fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
					if k > 0 {
						body.WriteByte(',')
					}
					body.WriteString(strings.ReplaceAll(one, "192.0.2.10", ip))
				}
				body.WriteByte(']')
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/alerts", bytes.NewReader(body.Bytes()))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				rb, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					if failed.Add(1) == 1 {
						t.Logf("push refused: %d %s", resp.StatusCode, rb)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
				stored.Add(fleetPushBatch)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d pushes failed", n)
	}
	if len(lat) == 0 {
		t.Fatal("no push succeeded")
	}
	return lat, stored.Load()
}

// pgCounters are PostgreSQL's figures: the database's commits and rows
// inserted, and the CPU ticks of every process of the cluster.
type pgCounters struct {
	commits, inserted, cpuTicks int64
}

func pgFigures(t *testing.T, pg *testutil.Postgres) pgCounters {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var c pgCounters
	// The statistics a backend sees are a snapshot: cleared first so
	// this read is fresh.
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = $1", pg.Database).Scan(&c.commits, &c.inserted); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	c.cpuTicks = treeTicks(pid)
	return c
}

// treeTicks sums the CPU ticks (user and system) of pid and of its
// children: the postmaster and its backends.
func treeTicks(pid int) int64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var sum int64
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The fields after the command, which may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		self, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, _ := strconv.Atoi(f[1])
		if self != pid && ppid != pid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + s
	}
	return sum
}

// selfCPU is this process's CPU time, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fleetLogin(t *testing.T, c *http.Client, base, id string) string {
	body, _ := json.Marshal(map[string]any{"machine_id": id, "password": fleetLoadPassword, "scenarios": []string{}})
	resp, err := c.Post(base+"/v1/watchers/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr LoginResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil || lr.Token == "" {
		t.Fatalf("login %s: %d %v", id, resp.StatusCode, err)
	}
	return lr.Token
}

// runFleetAgents is the agent process: n streams, each counting the
// distinct decisions it is sent, until stdin closes; then its report.
func runFleetAgents(t *testing.T, addr string, n int) {
	raiseNoFile(t, 8192)
	base := "http://" + addr
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	c := &http.Client{Transport: tr}
	tokens := make([]string, fleetLoadMachines)
	for i := range tokens {
		tokens[i] = fleetLogin(t, c, base, fmt.Sprintf("agent-%02d", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		started sync.WaitGroup
		failed  atomic.Int64
		bytesIn atomic.Int64
	)
	counts := make([]atomic.Int64, n)
	var firstFailure atomic.Pointer[string]
	fail := func(i int, why string) {
		failed.Add(1)
		why = fmt.Sprintf("stream %d: %s", i, why)
		firstFailure.CompareAndSwap(nil, &why)
	}
	started.Add(n)
	for i := range n {
		wg.Go(func() {
			var once sync.Once
			defer once.Do(started.Done)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+FleetStreamPath+"?after=0", nil)
			req.Header.Set("Authorization", "Bearer "+tokens[i%fleetLoadMachines])
			resp, err := c.Do(req)
			if err != nil {
				fail(i, err.Error())
				return
			}
			if resp.StatusCode != http.StatusOK {
				fail(i, resp.Status)
				return
			}
			defer resp.Body.Close()
			seen := map[int64]bool{}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				bytesIn.Add(int64(len(sc.Bytes()) + 1))
				var ev FleetEvent
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					if ctx.Err() != nil {
						return // the end, which may cut a line
					}
					// A line cut short is the last one of a stream that broke.
					fail(i, fmt.Sprintf("line %.200q: %v (read: %v)", sc.Bytes(), err, sc.Err()))
					return
				}
				for _, d := range ev.Decisions {
					seen[d.ID] = true
				}
				if ev.Kind == FleetCheckpoint {
					once.Do(started.Done)
				}
				counts[i].Store(int64(len(seen)))
			}
			if ctx.Err() == nil {
				fail(i, fmt.Sprintf("stream ended after %d decisions: %v", len(seen), sc.Err()))
			}
		})
	}
	started.Wait()
	fmt.Println(loadLinePrefix + "ready")
	// The parent writes how many decisions it stored, then ends stdin.
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	want, _ := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	pushed := time.Now()
	least := func() int64 {
		m := int64(math.MaxInt64)
		for i := range counts {
			m = min(m, counts[i].Load())
		}
		return m
	}
	for least() < want && time.Since(pushed) < fleetCatchUp && failed.Load() < int64(n) {
		time.Sleep(50 * time.Millisecond)
	}
	caughtUp := time.Since(pushed)
	io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	rep := fleetAgentsReport{Streams: n - int(failed.Load()), Failed: failed.Load(), Bytes: bytesIn.Load(), CatchUpMillis: caughtUp.Milliseconds()}
	rep.MinDec, rep.MaxDec = math.MaxInt, 0
	for i := range counts {
		c := int(counts[i].Load())
		rep.MinDec, rep.MaxDec = min(rep.MinDec, c), max(rep.MaxDec, c)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	rep.CPUMillis = (ru.Utime.Nano() + ru.Stime.Nano()) / 1e6
	if why := firstFailure.Load(); why != nil {
		rep.FirstFailure = *why
	}
	out, _ := json.Marshal(rep)
	fmt.Println(loadLinePrefix + string(out))
}

// fleetAgents is the parent's handle on the agent process.
type fleetAgents struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	out   strings.Builder
}

// startFleetAgents starts the agent process and waits until each of its
// streams is open and past its first checkpoint.
func startFleetAgents(t *testing.T, addr string, n int) *fleetAgents {
	a := &fleetAgents{lines: make(chan string, 16)}
	a.cmd = exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.timeout=5m")
	a.cmd.Env = append(os.Environ(), fleetLoadEnv+"="+addr, fleetLoadStreamsEnv+"="+strconv.Itoa(n))
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = a.cmd.Stdout
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.stdin.Close(); a.cmd.Process.Kill(); a.cmd.Wait() })
	go func() {
		defer close(a.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.out.WriteString(sc.Text() + "\n")
			if msg, ok := strings.CutPrefix(sc.Text(), loadLinePrefix); ok {
				a.lines <- msg
			}
		}
	}()
	select {
	case msg := <-a.lines:
		if msg != "ready" {
			t.Fatalf("agent process: %q", msg)
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent process did not open its streams within a minute")
	}
	return a
}

// stop ends the agents and returns their report.
func (a *fleetAgents) stop(t *testing.T, stored int64) fleetAgentsReport {
	fmt.Fprintf(a.stdin, "%d\n", stored)
	a.stdin.Close()
	select {
	case msg, ok := <-a.lines:
		var rep fleetAgentsReport
		if !ok || json.Unmarshal([]byte(msg), &rep) != nil {
			a.cmd.Wait()
			t.Fatalf("agent process report %q\n%s", msg, a.out.String())
		}
		return rep
	case <-time.After(fleetCatchUp + 30*time.Second):
		t.Fatalf("the agent process did not report within %v of its stdin closing", fleetCatchUp+30*time.Second)
	}
	return fleetAgentsReport{}
}
