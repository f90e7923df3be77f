package acquire

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

const benchColdLines = 500_000

// BenchmarkFileColdRead reads a large file from its head (mode cat) into an
// unbuffered channel drained by another goroutine, as the daemon's pipeline
// does; it reports lines/s and heap allocations per line. With acks=true
// the source is built WithAcks and the consumer acknowledges every line.
func BenchmarkFileColdRead(b *testing.B) {
	for _, acks := range []bool{false, true} {
		b.Run(fmt.Sprintf("acks=%v", acks), func(b *testing.B) { benchFileColdRead(b, acks) })
	}
}

func benchFileColdRead(b *testing.B, acks bool) {
	dir := b.TempDir()
	path := filepath.Join(dir, "auth.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range benchColdLines {
		fmt.Fprintf(w, "Nov 25 06:31:%02d web1 sshd[%d]: Failed password for invalid user admin from 198.18.%d.%d port %d ssh2\n",
			i%60, 2000+i%5000, i/256%256, i%256, 40000+i%20000)
	}
	w.Flush()
	f.Close()
	fi, _ := os.Stat(path)
	cfg := defaultConfig()
	cfg.Source, cfg.Filenames, cfg.Labels = KindFile, []string{path}, map[string]string{"type": "syslog"}
	cfg.Mode, cfg.Start = "cat", "head"
	b.ReportAllocs()
	b.SetBytes(fi.Size())
	var ms0, ms1 runtime.MemStats
	var lines uint64
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	var opts []Option
	if acks {
		opts = append(opts, WithAcks())
	}
	state := filepath.Join(dir, "state")
	for b.Loop() {
		os.RemoveAll(state) // each round reads the file from its head
		src, err := New(cfg, state, opts...)
		if err != nil {
			b.Fatal(err)
		}
		out := make(chan detect.Line)
		done := make(chan error, 1)
		go func() { done <- src.Stream(context.Background(), out); close(out) }()
		n := 0
		for l := range out {
			l.Pos.Ack()
			n++
		}
		if err := <-done; err != nil || n != benchColdLines {
			b.Fatalf("read %d lines: %v", n, err)
		}
		lines += uint64(n)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(lines)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(lines), "allocs/line")
}

// BenchmarkFileTailLatency appends lines one at a time to a followed file
// and measures append-to-channel latency (time from before the write(2) to
// the consumer holding the line), p50 and p99 over 1000 lines per round.
func BenchmarkFileTailLatency(b *testing.B) {
	for _, poll := range []bool{false} {
		b.Run(fmt.Sprintf("inotify=%v", !poll), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "app.log")
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			cfg := defaultConfig()
			cfg.Source, cfg.Filenames, cfg.Labels = KindFile, []string{path}, map[string]string{"type": "syslog"}
			cfg.Start = "head"
			src, err := New(cfg, filepath.Join(dir, "state"))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			out := make(chan detect.Line)
			done := make(chan error, 1)
			go func() { done <- src.Stream(ctx, out) }()
			defer func() { cancel(); <-done }()
			time.Sleep(100 * time.Millisecond) // the watch is in place
			lat := make([]time.Duration, 0, 1000)
			var all []time.Duration
			for b.Loop() {
				lat = lat[:0]
				for i := range 1000 {
					line := "Nov 25 06:31:17 web1 sshd[2311]: Invalid user admin from 198.18.0.7 port " + strconv.Itoa(i) + "\n"
					t0 := time.Now()
					if _, err := f.WriteString(line); err != nil {
						b.Fatal(err)
					}
					select {
					case l := <-out:
						lat = append(lat, time.Since(t0))
						if l.Raw != line[:len(line)-1] {
							b.Fatalf("got %q", l.Raw)
						}
					case <-time.After(5 * time.Second):
						b.Fatal("line did not arrive")
					}
				}
				all = append(all, lat...)
			}
			b.ReportMetric(float64(percentile(all, 0.50).Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(percentile(all, 0.99).Nanoseconds()), "p99-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}

var benchLine = regexp.MustCompile(`BENCH (\S+)=(\S+)`)

// BenchmarkJournald runs TestJournaldBenchChild against a private journald
// and reports what it measured: entry-to-channel latency p50/p99 over 1000
// entries written one at a time, and the source's read rate over 20,000
// entries (start: head, mode cat).
func BenchmarkJournald(b *testing.B) {
	testutil.RequireRoot(b)
	metrics := map[string]float64{}
	for b.Loop() {
		out := runJournaldChild(b, "TestJournaldBenchChild")
		for _, m := range benchLine.FindAllStringSubmatch(out, -1) {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				b.Fatal(err)
			}
			metrics[m[1]] = v
		}
	}
	if len(metrics) != 4 {
		b.Fatalf("child reported %v", metrics)
	}
	for k, v := range metrics {
		b.ReportMetric(v, k)
	}
	b.ReportMetric(0, "ns/op")
}

func TestJournaldBenchChild(t *testing.T) {
	_ = inJournaldChild(t)
	ident := testutil.RandName("moatb", 6)
	cfg := journalConfig(ident)
	r := startJournal(t, cfg, t.TempDir())
	r.positioned()
	lat := make([]time.Duration, 0, 1000)
	for i := range 1000 {
		t0 := time.Now()
		if err := journal.Send("Invalid user admin from 198.18.0.7 port "+strconv.Itoa(i), journal.PriInfo,
			map[string]string{"SYSLOG_IDENTIFIER": ident}); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-r.out:
			lat = append(lat, time.Since(t0))
			if !strings.HasSuffix(l.Raw, " port "+strconv.Itoa(i)) {
				t.Fatalf("got %q", l.Raw)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("entry %d did not arrive", i)
		}
	}
	r.stop()

	const n = 20_000
	cident := testutil.RandName("moatc", 6)
	for i := range n {
		if err := journal.Send("Failed password for root from 198.18.0.9 port "+strconv.Itoa(i), journal.PriInfo,
			map[string]string{"SYSLOG_IDENTIFIER": cident}); err != nil {
			t.Fatal(err)
		}
	}
	ccfg := journalConfig(cident)
	ccfg.Start, ccfg.Mode = "head", "cat"
	// Wait until journald has written all of them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rp, err := OpenJournalDir("/run/log/journal", ccfg.JournalctlFilter, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(collectReplay(t, rp)); got == n {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("journald holds %d of %d entries", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	src, err := New(ccfg, "")
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan detect.Line)
	done := make(chan error, 1)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	go func() { done <- src.Stream(context.Background(), out); close(out) }()
	got := 0
	for range out {
		got++
	}
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	if err := <-done; err != nil || got != n {
		t.Fatalf("read %d of %d: %v", got, n, err)
	}
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	allocs := float64(m1.Mallocs-m0.Mallocs) / n
	fmt.Printf("BENCH entries/s=%.0f\nBENCH p50-ns=%d\nBENCH p99-ns=%d\nBENCH allocs/entry=%.1f\n", float64(n)/el.Seconds(), p50.Nanoseconds(), p99.Nanoseconds(), allocs)
	t.Logf("journald: %.0f entries/s read; entry-to-channel latency p50 %s p99 %s", float64(n)/el.Seconds(), p50, p99)
	if p99 > 50*time.Millisecond {
		t.Errorf("p99 latency %s: the source is not following with the journal's wait", p99)
	}
}

// BenchmarkAckLog is the per-line cost WithAcks adds on its own: the
// sender records the line, the consumer acknowledges it, the saver takes
// it (one take per 1000 lines, as a save interval batches them).
func BenchmarkAckLog(b *testing.B) {
	a := newAckLog[fileAck]()
	cur := &fileCursor{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		seq := a.next()
		a.sent(seq, fileAck{cur, mark{int64(i), false}})
		a.ack(seq)
		if i++; i%1000 == 0 {
			a.take(func(fileAck) {})
		}
	}
}
