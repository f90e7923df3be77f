package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// daemonGOGC is the daemon's GC target unless GOGC says otherwise. With
// Go's default of 100, a small heap is collected every few megabytes, and
// on a 2-CPU host each cycle takes a CPU from the detection path for
// milliseconds: over 200 attackers through journald, the detection-to-kernel
// p99 was 2.3-15 ms (median 6.9) in five runs at 100, 2.8-5.8 ms (median
// 3.3) at 200. The price is a heap that may grow to three times what is
// live instead of twice, which trimIdle gives back while nothing happens.
const daemonGOGC = 200

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGOGC)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limitAfterGC()
	}
}

// A big live heap (a million bans hold over 100 MB) would grow to three
// times itself at GOGC 200, and the latency argument for 200 is about
// small heaps collected every few megabytes. So after each collection the
// soft memory limit becomes the live heap plus a quarter, never below
// memLimitFloor: GOGC 200 still rules a small heap, and a big one is
// collected once a quarter of it is garbage. Following the live heap, the
// limit never falls below it, so the collector never runs without end.
const memLimitFloor = 64 << 20

// limitAfterGC sets the limit now and arms itself for the next cycle (on
// an object too big for the tiny allocator, whose cleanups may never run).
func limitAfterGC() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	debug.SetMemoryLimit(int64(max(memLimitFloor, s[0].Value.Uint64()*5/4)))
	runtime.AddCleanup(new([32]byte), func(struct{}) { limitAfterGC() }, struct{}{})
}

// Idle trimming. Loading the hub leaves more garbage than the live heap
// (parsing and compiling grok and expr programs; the programs themselves
// keep about 2 MB live with the default content), and at GOGC 200 an idle
// daemon, allocating little, would keep that and grow towards three times
// the live heap before collecting again. So once running, and then
// whenever no line arrived for a trimInterval and enough garbage or free
// heap is held, moat collects and returns the free pages to the kernel.
// A collection of the idle heap takes a few milliseconds of one CPU; it
// never runs while lines flow.
const (
	trimInterval = 30 * time.Second
	trimSlack    = 4 << 20
)

// lineCounter is what trimIdle reads to tell idle from busy.
type lineCounter interface{ Lines() uint64 }

func (r *engineRef) Lines() uint64 { return r.p.Load().Stats().Lines }

// trimIdle returns the start's garbage at once, then idle garbage every
// trimInterval without lines, until ctx ends.
func trimIdle(ctx context.Context, lc lineCounter) {
	t := trimmer{lines: lc, heap: readHeap, free: debug.FreeOSMemory}
	t.run(ctx, time.NewTicker(trimInterval).C)
}

// trimmer is trimIdle with its clock, heap reading and release apart.
type trimmer struct {
	lines lineCounter
	// heap returns the live heap after the last collection, the heap
	// objects now (live plus garbage) and the free heap not yet released.
	heap func() (live, objects, free uint64)
	free func()
}

func (t trimmer) run(ctx context.Context, tick <-chan time.Time) {
	t.free()
	last := t.lines.Lines()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		n := t.lines.Lines()
		busy := n != last
		last = n
		if busy {
			continue
		}
		if live, objects, free := t.heap(); objects+free > live+trimSlack {
			t.free()
		}
	}
}

func readHeap() (live, objects, free uint64) {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
}
