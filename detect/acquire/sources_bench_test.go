package acquire

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
)

// sourceBenchLine is an sshd failure with its syslog header.
const sourceBenchLine = "<38>Dec  7 10:00:00 gw sshd[4242]: Failed password for invalid user admin from 198.51.100.%d port 40022 ssh2"

// benchDrain counts lines from out until n arrived or the wait ends, and
// reports lines/s from start.
func benchDrain(b *testing.B, out <-chan detect.Line, n int, start time.Time) {
	b.Helper()
	wait := time.After(time.Minute)
	for got := 0; got < n; got++ {
		select {
		case <-out:
		case <-wait:
			b.Fatalf("%d of %d lines arrived", got, n)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkCommandSource: a program's stdout read as lines (cat of a file,
// as a log reader such as sshguard's LOGREADER would stream).
func BenchmarkCommandSource(b *testing.B) {
	path := filepath.Join(b.TempDir(), "lines")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range b.N {
		fmt.Fprintf(w, sourceBenchLine+"\n", i%250)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	cfg := defaultConfig()
	cfg.Source = KindCommand
	cfg.Labels = map[string]string{"type": "syslog"}
	cfg.Command = []string{"/bin/cat", path}
	src, err := New(cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan detect.Line, 4096)
	b.ResetTimer()
	start := time.Now()
	go src.Stream(ctx, out)
	benchDrain(b, out, b.N, start)
}
