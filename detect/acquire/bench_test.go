package acquire

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

// benchLine is a realistic sshd line (~100 bytes).
func benchLine(i int) string {
	return fmt.Sprintf("Nov 25 10:00:00 host sshd[%d]: Failed password for invalid user admin from 198.18.%d.%d port 22 ssh2", 1000+i%30000, i/256%256, i%256)
}

func startBenchSource(tb testing.TB, cfg Config) (chan detect.Line, func()) {
	tb.Helper()
	src, err := New(cfg, "")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan detect.Line, 1024)
	done := make(chan error, 1)
	go func() { done <- src.Stream(ctx, out) }()
	return out, func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Stream: %v", err)
		}
	}
}

// BenchmarkFileColdRead reads a file of b.N lines from its start: ns/op and
// allocs/op are per line.
func BenchmarkFileColdRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cold.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for i := range b.N {
		n, _ := fmt.Fprintln(w, benchLine(i))
		size += int64(n)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	cfg := defaultConfig()
	cfg.Source, cfg.Filenames, cfg.Start = KindFile, []string{path}, "head"
	cfg.Labels = map[string]string{"type": "syslog"}

	b.ReportAllocs()
	b.SetBytes(size / int64(b.N))
	b.ResetTimer()
	start := time.Now()
	out, stop := startBenchSource(b, cfg)
	for range b.N {
		<-out
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/el.Seconds(), "lines/s")
}

// BenchmarkFileTailLatency appends one line at a time to a followed file
// (inotify) and measures until the line arrives on the channel.
func BenchmarkFileTailLatency(b *testing.B) {
	path := filepath.Join(b.TempDir(), "live.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cfg := defaultConfig()
	cfg.Source, cfg.Filenames = KindFile, []string{path}
	cfg.Labels = map[string]string{"type": "syslog"}
	out, stop := startBenchSource(b, cfg)
	defer stop()
	time.Sleep(100 * time.Millisecond) // watch in place

	n := max(b.N, 1000)
	arrive := make([]time.Duration, 0, n)
	stamp := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		line := []byte(benchLine(i) + "\n")
		t0 := time.Now()
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		select {
		case l := <-out:
			arrive = append(arrive, time.Since(t0))
			stamp = append(stamp, l.ReadAt.Sub(t0))
			if l.Raw != string(line[:len(line)-1]) {
				b.Fatalf("line %d: got %q", i, l.Raw)
			}
		case <-time.After(5 * time.Second):
			b.Fatalf("line %d did not arrive", i)
		}
	}
	b.StopTimer()
	reportLatency(b, arrive, stamp)
}

func reportLatency(b *testing.B, arrive, stamp []time.Duration) {
	b.ReportMetric(float64(percentile(arrive, 0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(arrive, 0.99).Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(percentile(stamp, 0.99).Nanoseconds()), "p99-readat-ns")
	b.ReportMetric(float64(len(arrive)), "samples")
}

// BenchmarkJournald runs TestJournaldBenchChild against a private journald
// and reports what it measured: entries/s read back from the journal and
// the latency from journal.Send to the line on the channel.
func BenchmarkJournald(b *testing.B) {
	testutil.RequireRoot(b)
	out := runJournaldChild(b, "TestJournaldBenchChild")
	m := regexp.MustCompile(`BENCH (\S+)=(\S+)`).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		b.Fatalf("child reported nothing:\n%s", out)
	}
	for _, kv := range m {
		v, err := strconv.ParseFloat(kv[2], 64)
		if err != nil {
			b.Fatalf("child metric %q: %v", kv[0], err)
		}
		b.ReportMetric(v, kv[1])
	}
}

// TestJournaldBenchChild measures inside the private journald (started by
// BenchmarkJournald; skipped otherwise). It checks what it measures: every
// entry arrives, in order.
func TestJournaldBenchChild(t *testing.T) {
	inJournaldChild(t)
	ident := testutil.RandName("moatb", 6)
	cfg := journalConfig(ident)
	cfg.Start = "head"
	cfg.Mode = "cat"

	// Throughput: a backlog read from the head.
	const backlog = 30000
	for i := range backlog {
		if err := journal.Send("message "+strconv.Itoa(i)+" "+benchLine(i), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": ident}); err != nil {
			t.Fatal(err)
		}
	}
	// The first pass waits until journald has written the whole backlog
	// (Send only queues it on the socket); the second one is timed.
	var el time.Duration
	for pass := range 2 {
		r := startJournal(t, cfg, "")
		start := time.Now()
		for got := 0; got < backlog; got++ {
			select {
			case <-r.out:
			case <-time.After(10 * time.Second):
				t.Fatalf("backlog pass %d: %d of %d entries", pass, got, backlog)
			}
		}
		el = time.Since(start)
		r.stop()
	}
	t.Logf("BENCH entries/s=%.0f", backlog/el.Seconds())

	// Latency: one entry at a time into a followed journal.
	live := journalConfig(ident + "l")
	r := startJournal(t, live, "")
	time.Sleep(300 * time.Millisecond) // seeked
	const n = 1000
	var arrive, stamp []time.Duration
	for i := range n {
		t0 := time.Now()
		if err := journal.Send("message "+strconv.Itoa(i), journal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": ident + "l"}); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-r.out:
			arrive = append(arrive, time.Since(t0))
			stamp = append(stamp, l.ReadAt.Sub(t0))
			if want := "]: message " + strconv.Itoa(i); len(l.Raw) < len(want) || l.Raw[len(l.Raw)-len(want):] != want {
				t.Fatalf("entry %d: got %q", i, l.Raw)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("entry %d did not arrive; stats %+v; journal files: %s", i, r.src.Stats(), journalFiles())
		}
	}
	r.stop()
	t.Logf("BENCH p50-ns=%d", percentile(arrive, 0.50).Nanoseconds())
	t.Logf("BENCH p99-ns=%d", percentile(arrive, 0.99).Nanoseconds())
	t.Logf("BENCH p99-readat-ns=%d", percentile(stamp, 0.99).Nanoseconds())
	t.Logf("BENCH samples=%d", n)
}

func journalFiles() string {
	m, _ := filepath.Glob("/run/log/journal/*/*")
	var b []byte
	for _, p := range m {
		fi, err := os.Stat(p)
		if err == nil {
			b = fmt.Appendf(b, "%s %d; ", filepath.Base(p), fi.Size())
		}
	}
	return string(b)
}
