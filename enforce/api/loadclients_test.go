package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The load test's clients run in a process of their own, as bouncers do:
// the test binary again, in the role the environment selects. The parent
// holds only moat's side (server, store, reconciler, nftables), so its
// ban latencies and RSS are moat's, not those of 2,010 client goroutines
// sharing its scheduler and heap.
const (
	// loadClientsEnv names the file of bouncer keys, one a line, and
	// selects the client role.
	loadClientsEnv = "MOAT_LOAD_CLIENTS_KEYS"
	// loadAddrEnv is the API's loopback address.
	loadAddrEnv = "MOAT_LOAD_CLIENTS_ADDR"
	// loadLinePrefix marks the child's lines for the parent: "ready" once
	// every client is under way, then the JSON report at the end.
	loadLinePrefix = "moat-load-clients: "
)

// loadReport is what the client process counted, sent to the parent as
// JSON when its stdin closes.
type loadReport struct {
	Startups     int64 `json:"startups"`
	StartupBytes int64 `json:"startup_bytes"`
	Polls        int64 `json:"polls"`
	Refused      int64 `json:"refused"`
	Failed       int64 `json:"failed"`
	Stalled      int   `json:"stalled"`
	Unread       int   `json:"unread"`
	// PeakRSS is the client process's VmHWM, in bytes.
	PeakRSS int64 `json:"peak_rss"`
}

type loadCounts struct {
	startups, polls, refused, failed atomic.Int64
	startupBytes                     atomic.Int64
}

// rawRequest connects and sends a GET it will never read the answer of.
func rawRequest(addr, path, key string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\nUser-Agent: stalled/1\r\n\r\n", path, addr, key)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// bouncer behaves as a CrowdSec bouncer does: a startup pull until one
// succeeds, then a delta every loadPoll (with jitter), until ctx ends.
func bouncer(ctx context.Context, c *http.Client, base, key string, n *loadCounts) {
	startup := true
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/decisions/stream?startup="+strconv.FormatBool(startup), nil)
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("User-Agent", "crowdsec-firewall-bouncer/load")
		wait := loadPoll/2 + rand.N(loadPoll)
		resp, err := c.Do(req)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				n.failed.Add(1)
			}
		case resp.StatusCode == http.StatusOK:
			size, err := io.Copy(io.Discard, resp.Body)
			if err != nil {
				if ctx.Err() == nil {
					n.failed.Add(1)
				}
				break
			}
			if startup {
				n.startups.Add(1)
				n.startupBytes.Add(size)
				startup = false
			} else {
				n.polls.Add(1)
			}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			n.refused.Add(1)
			wait = time.Second/2 + rand.N(2*time.Second)
		default:
			n.failed.Add(1)
		}
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// runLoadClients is the client process: 10 streams stalled in a startup
// pull, 1,000 bouncers pulling, 1,000 listings never read, until stdin
// closes; then it prints its report.
func runLoadClients(t *testing.T, keyFile, addr string) {
	raiseNoFile(t, 16384)
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys := strings.Fields(string(data))
	if len(keys) != loadBouncers+loadStalled {
		t.Fatalf("%s holds %d keys, want %d", keyFile, len(keys), loadBouncers+loadStalled)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		n     loadCounts
		rep   loadReport
		conns []net.Conn
		wg    sync.WaitGroup
	)
	tr := &http.Transport{MaxIdleConnsPerHost: loadBouncers, DisableCompression: true}
	defer func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		tr.CloseIdleConnections()
	}()
	for i := range loadStalled {
		c, err := rawRequest(addr, "/v1/decisions/stream?startup=true", keys[loadBouncers+i])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		rep.Stalled++
	}
	time.Sleep(200 * time.Millisecond)
	client := &http.Client{Transport: tr}
	for i := range loadBouncers {
		wg.Go(func() { bouncer(ctx, client, "http://"+addr, keys[i], &n) })
	}
	for i := range loadUnreadLists {
		c, err := rawRequest(addr, "/v1/decisions", keys[i%loadBouncers])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		rep.Unread++
	}
	fmt.Println(loadLinePrefix + "ready")
	// The parent closes stdin to end the load, or dies.
	io.Copy(io.Discard, os.Stdin)
	cancel()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	wg.Wait()
	rep.Startups, rep.StartupBytes, rep.Polls = n.startups.Load(), n.startupBytes.Load(), n.polls.Load()
	rep.Refused, rep.Failed = n.refused.Load(), n.failed.Load()
	rep.PeakRSS = procStatus(t, "VmHWM")
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(loadLinePrefix + string(out))
}

// loadClients is the parent's handle on the client process.
type loadClients struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	// done closes when the child's output ends; out and report are then
	// final.
	done     chan struct{}
	out      strings.Builder
	report   *loadReport
	endOnce  sync.Once
	waitOnce sync.Once
	waitErr  error
}

// startLoadClients serves the bouncer API on loopback and starts the
// client process against it; the clients run until ctx ends or stop.
func startLoadClients(ctx context.Context, t *testing.T, f *fixture) *loadClients {
	keys := make([]string, loadBouncers+loadStalled)
	for i := range keys {
		keys[i] = f.bouncerKey(t, fmt.Sprintf("fw%04d", i))
	}
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(srvCtx, ln, f.srv.BouncerHandler()) }()
	t.Cleanup(func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})

	l := &loadClients{ready: make(chan struct{}), done: make(chan struct{})}
	l.cmd = exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.timeout=5m")
	l.cmd.Env = append(os.Environ(), loadClientsEnv+"="+keyFile, loadAddrEnv+"="+ln.Addr().String())
	// The clients die with the test process, whatever ends it.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.cmd.Stderr = l.cmd.Stdout
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the server's: the clients end before it does.
	t.Cleanup(func() {
		l.end()
		select {
		case <-l.done:
		case <-time.After(30 * time.Second):
			l.cmd.Process.Kill()
			<-l.done
		}
		l.wait()
	})
	go l.read(t, out)
	go func() {
		select {
		case <-ctx.Done():
			l.end()
		case <-l.done:
		}
	}()
	select {
	case <-l.ready:
	case <-l.done:
		t.Fatalf("the client process ended before its load was under way: %v\n%s", l.wait(), l.out.String())
	case <-time.After(time.Minute):
		t.Fatal("the client process did not get its load under way within a minute")
	}
	return l
}

// read collects the child's output until it ends.
func (l *loadClients) read(t *testing.T, r io.Reader) {
	defer close(l.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		l.out.WriteString(line + "\n")
		msg, ok := strings.CutPrefix(line, loadLinePrefix)
		switch {
		case !ok:
		case msg == "ready":
			close(l.ready)
		default:
			var rep loadReport
			if err := json.Unmarshal([]byte(msg), &rep); err != nil {
				t.Errorf("client report %q: %v", msg, err)
				continue
			}
			l.report = &rep
		}
	}
}

// end tells the clients to stop: they see stdin close.
func (l *loadClients) end() { l.endOnce.Do(func() { l.stdin.Close() }) }

func (l *loadClients) wait() error {
	l.waitOnce.Do(func() { l.waitErr = l.cmd.Wait() })
	return l.waitErr
}

// stop ends the clients and returns their report.
func (l *loadClients) stop(t *testing.T) loadReport {
	l.end()
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		l.cmd.Process.Kill()
		<-l.done
		t.Fatalf("the client process did not stop within 30s of its stdin closing\n%s", l.out.String())
	}
	if err := l.wait(); err != nil || l.report == nil {
		t.Fatalf("client process: %v, report %v\n%s", err, l.report != nil, l.out.String())
	}
	return *l.report
}
