package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The agents of TestFleetStreamLoad: a process of their own (the test
// binary again, selected by fleetLoadEnv), so the server's process CPU
// and the push latencies are the server's.

// fleetAgentsReport is what the agent process counted: per stream, the
// decisions it received (distinct ones on the sampled streams) and the
// last checkpoint it reached.
type fleetAgentsReport struct {
	Streams int   `json:"streams"`
	Failed  int64 `json:"failed"`
	MinDec  int   `json:"min_decisions"`
	MaxDec  int   `json:"max_decisions"`
	MinSeq  int64 `json:"min_seq"`
	// Sampled is the streams that decoded every line, SampleMin the
	// fewest distinct decisions one of them held.
	Sampled   int `json:"sampled"`
	SampleMin int `json:"sample_min"`
	// LagP50Micros and LagP99Micros are how long after the server read
	// a change from the store the sampled streams held it.
	LagP50Micros int64 `json:"lag_p50_us"`
	LagP99Micros int64 `json:"lag_p99_us"`
	// Held is, for each marked value (isPropagationMark), when the last
	// sampled stream to receive it did (Unix ns: one host, one clock).
	Held      map[string]int64 `json:"held"`
	Bytes     int64            `json:"bytes"`
	CPUMillis int64            `json:"cpu_ms"`
	// FirstFailure is why the first stream to fail did.
	FirstFailure string `json:"first_failure,omitempty"`
	// CatchUpMillis is how long after the pushes ended every stream
	// held every decision (or the agents gave up waiting).
	CatchUpMillis int64 `json:"catch_up_ms"`
}

// fleetCatchUp bounds how long the agents wait, once the pushes ended,
// for every stream to hold every decision.
const fleetCatchUp = 90 * time.Second

// fleetSampleEvery picks the streams the agent process decodes in full
// (one in fleetSampleEvery): the others only count. A thousand streams
// each decoding every line made the agents, not the server, what bounded
// the test: at 5,000 alerts/s they receive 5 million decisions (over a
// GB of JSON) a second, which a real fleet decodes on a thousand hosts
// and this machine cannot decode on its two cores.
const fleetSampleEvery = 100

// Markers of the stream's lines the counting streams look for. A JSON
// string holds a quote only escaped, so decisionMark appears once per
// decision object (id is the first field of Decision), and only there.
var (
	newMark        = []byte(`{"kind":"new",`)
	checkpointMark = []byte(`{"kind":"checkpoint",`)
	decisionMark   = []byte(`{"id":`)
	seqMark        = []byte(`"seq":`)
)

// fleetLine is what a sampled stream decodes of a line.
type fleetLine struct {
	Kind      string `json:"kind"`
	Seq       int64  `json:"seq"`
	Decisions []struct {
		ID    int64  `json:"id"`
		Value string `json:"value"`
	} `json:"decisions"`
	At time.Time `json:"at"`
}

// lineSeq is the sequence a checkpoint line carries, read without
// decoding it (none: 0, omitted).
func lineSeq(line []byte) (int64, bool) {
	i := bytes.Index(line, seqMark)
	if i < 0 {
		return 0, true
	}
	line = line[i+len(seqMark):]
	n := 0
	for n < len(line) && line[n] >= '0' && line[n] <= '9' {
		n++
	}
	v, err := strconv.ParseInt(string(line[:n]), 10, 64)
	return v, err == nil
}

// runFleetAgents is the agent process: n streams until stdin closes, then
// its report. Every stream reads every byte and counts the decisions of
// its "new" lines and the checkpoints; one in fleetSampleEvery decodes
// each line and keeps the distinct IDs, and the lag of each new event
// behind the server's read (the event's At: one clock, one host).
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
		lagMu   sync.Mutex
		lags    []time.Duration
		held    = map[string]int64{}
	)
	// counts are the decisions each stream received (distinct ones on a
	// sampled stream), seqs the last checkpoint each reached.
	counts := make([]atomic.Int64, n)
	seqs := make([]atomic.Int64, n)
	sampled := make([]bool, n)
	var firstFailure atomic.Pointer[string]
	fail := func(i int, why string) {
		failed.Add(1)
		why = fmt.Sprintf("stream %d: %s", i, why)
		firstFailure.CompareAndSwap(nil, &why)
	}
	started.Add(n)
	for i := range n {
		sampled[i] = i%fleetSampleEvery == 0
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
			var seen map[int64]bool
			var mine []time.Duration
			if sampled[i] {
				seen = map[int64]bool{}
				defer func() { lagMu.Lock(); lags = append(lags, mine...); lagMu.Unlock() }()
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 256<<10), 16<<20)
			for sc.Scan() {
				line := sc.Bytes()
				bytesIn.Add(int64(len(line) + 1))
				if sampled[i] {
					var ev fleetLine
					if err := json.Unmarshal(line, &ev); err != nil {
						if ctx.Err() != nil {
							return // the end, which may cut a line
						}
						fail(i, fmt.Sprintf("line %.200q: %v (read: %v)", line, err, sc.Err()))
						return
					}
					for _, d := range ev.Decisions {
						seen[d.ID] = true
						if isPropagationMark(d.Value) {
							now := time.Now().UnixNano()
							lagMu.Lock()
							held[d.Value] = max(held[d.Value], now)
							lagMu.Unlock()
						}
					}
					if ev.Kind == FleetNew {
						mine = append(mine, time.Since(ev.At))
					}
					counts[i].Store(int64(len(seen)))
					if ev.Kind == FleetCheckpoint {
						seqs[i].Store(ev.Seq)
						once.Do(started.Done)
					}
					continue
				}
				switch {
				case bytes.HasPrefix(line, newMark):
					counts[i].Add(int64(bytes.Count(line, decisionMark)))
				case bytes.HasPrefix(line, checkpointMark):
					seq, ok := lineSeq(line)
					if !ok {
						fail(i, fmt.Sprintf("checkpoint %.200q without a sequence", line))
						return
					}
					seqs[i].Store(seq)
					once.Do(started.Done)
				}
			}
			if ctx.Err() == nil {
				fail(i, fmt.Sprintf("stream ended after %d decisions: %v", counts[i].Load(), sc.Err()))
			}
		})
	}
	started.Wait()
	fmt.Println(loadLinePrefix + "ready")
	// The parent writes how many decisions it stored and the store's
	// sequence after the last, then ends stdin.
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	var want, wantSeq int64
	fmt.Sscan(line, &want, &wantSeq)
	pushed := time.Now()
	behind := func() bool {
		for i := range counts {
			if counts[i].Load() < want || seqs[i].Load() < wantSeq {
				return true
			}
		}
		return false
	}
	for behind() && time.Since(pushed) < fleetCatchUp && failed.Load() < int64(n) {
		time.Sleep(20 * time.Millisecond)
	}
	caughtUp := time.Since(pushed)
	io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	rep := fleetAgentsReport{Streams: n - int(failed.Load()), Failed: failed.Load(), Bytes: bytesIn.Load(), CatchUpMillis: caughtUp.Milliseconds(), Held: held}
	rep.MinDec, rep.MaxDec, rep.SampleMin, rep.MinSeq = math.MaxInt, 0, math.MaxInt, math.MaxInt64
	for i := range counts {
		c := int(counts[i].Load())
		rep.MinDec, rep.MaxDec = min(rep.MinDec, c), max(rep.MaxDec, c)
		rep.MinSeq = min(rep.MinSeq, seqs[i].Load())
		if sampled[i] {
			rep.Sampled++
			rep.SampleMin = min(rep.SampleMin, c)
		}
	}
	slices.Sort(lags)
	rep.LagP50Micros, rep.LagP99Micros = pctile(lags, 0.5).Microseconds(), pctile(lags, 0.99).Microseconds()
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
func (a *fleetAgents) stop(t *testing.T, stored, seq int64) fleetAgentsReport {
	fmt.Fprintf(a.stdin, "%d %d\n", stored, seq)
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
