package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// procMem reads a field (VmRSS, VmHWM) of a process's /proc status, in
// bytes; 0 when the process is gone.
func procMem(pid, field string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func vmRSS(t *testing.T) uint64 {
	n := procMem("self", "VmRSS")
	if n == 0 {
		t.Fatal("no VmRSS in /proc/self/status")
	}
	return n
}

// peakSampler records the highest heap in use and resident set of this
// process (the serving side) while it runs, and the resident high-water
// mark of a child. The child's is read from /proc while it runs: its
// rusage maxrss starts at this process's resident set, as Linux carries
// it over the fork and exec.
type peakSampler struct {
	mu               sync.Mutex
	heap, rss, child uint64
	childPID         string
	stop             chan struct{}
	done             chan struct{}
}

func (p *peakSampler) watch(pid int) {
	p.mu.Lock()
	p.childPID = strconv.Itoa(pid)
	p.mu.Unlock()
}

func samplePeaks(t *testing.T) *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			rss := vmRSS(t)
			p.mu.Lock()
			p.heap, p.rss = max(p.heap, ms.HeapInuse), max(p.rss, rss)
			if p.childPID != "" {
				p.child = max(p.child, procMem(p.childPID, "VmHWM"))
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *peakSampler) Stop() (heap, rss, child uint64) {
	close(p.stop)
	<-p.done
	return p.heap, p.rss, p.child
}

// Listing a million decisions: the CLI (a child process) prints them as it
// reads them and the daemon (this process) serves them a page at a time,
// so neither grows with the list. Before, the CLI decoded the whole list
// (1.17 GB for 1M) and the table was aligned in memory.
func TestDecisionsListMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("a million decisions")
	}
	const n = 1_000_000
	// Bounds: what a page, the encoder's buffers and the SQLite caches
	// take, with room for a loaded machine's GC pacing; the list itself
	// is 250 MB of JSON.
	const (
		maxClientRSS  = 64 << 20
		maxServerHeap = 64 << 20
		maxServerRSS  = 128 << 20
	)
	t0 := time.Now()
	cfg := listDaemon(t, n)
	t.Logf("%d decisions inserted and served in %v", n, time.Since(t0).Round(time.Millisecond))
	// The store loads its in-memory indexes in the background; measure
	// from after that.
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	baseRSS := vmRSS(t)

	out := filepath.Join(t.TempDir(), "list.json")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	peaks := samplePeaks(t)
	cmd := moatCommand("decisions", "list", "--all", "-o", "json", "-c", cfg)
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	peaks.watch(cmd.Process.Pid)
	err = cmd.Wait()
	elapsed := time.Since(start)
	heap, rss, childRSS := peaks.Stop()
	f.Close()
	if err != nil {
		t.Fatalf("moat decisions list --all: %v\n%s", err, stderr.String())
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	st, _ := os.Stat(out)
	t.Logf("list --all -o json of %d: %v (CLI CPU %v), %d MiB of JSON; CLI max RSS %d MiB; daemon heap in use %d -> %d MiB peak, RSS %d -> %d MiB peak",
		n, elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), st.Size()>>20, childRSS>>20, base.HeapInuse>>20, heap>>20, baseRSS>>20, rss>>20)
	if childRSS == 0 {
		t.Fatal("no reading of the CLI's resident set")
	}
	if childRSS > maxClientRSS {
		t.Errorf("the CLI reached %d MiB resident listing %d decisions, want at most %d", childRSS>>20, n, maxClientRSS>>20)
	}
	if heap > base.HeapInuse && heap-base.HeapInuse > maxServerHeap {
		t.Errorf("the daemon's heap grew by %d MiB serving the list, want at most %d", (heap-base.HeapInuse)>>20, maxServerHeap>>20)
	}
	if rss > baseRSS && rss-baseRSS > maxServerRSS {
		t.Errorf("the daemon's RSS grew by %d MiB serving the list, want at most %d", (rss-baseRSS)>>20, maxServerRSS>>20)
	}

	// Every decision, once, newest first, in one JSON array.
	rf, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	dec := json.NewDecoder(bufio.NewReader(rf))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		t.Fatalf("output starts with %v, %v; want [", tok, err)
	}
	next := int64(n)
	for dec.More() {
		var d api.Decision
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("decision after ID %d: %v", next+1, err)
		}
		if d.ID != next {
			t.Fatalf("decision ID %d, want %d", d.ID, next)
		}
		next--
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') || next != 0 {
		t.Fatalf("output ends with %v, %v after %d decisions; want ] after %d", tok, err, int64(n)-next, n)
	}

	// The default: 100 rows and the count, at once.
	start = time.Now()
	code, tbl, errOut := runMoat(t, "", "decisions", "list", "-o", "table", "-c", cfg)
	t.Logf("default list (table) of %d: %v", n, time.Since(start).Round(time.Millisecond))
	if code != exitOK || strings.Count(tbl, "\n") != 101 || errOut != "showing 100 of 1000000 (use --limit or --all)\n" {
		t.Fatalf("default list: exit %d, %d lines, stderr %q", code, strings.Count(tbl, "\n"), errOut)
	}
}
