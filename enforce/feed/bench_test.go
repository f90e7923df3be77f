package feed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchList writes a list of n addresses.
func benchList(b *testing.B, n int) string {
	b.Helper()
	var s strings.Builder
	for i := range n {
		fmt.Fprintf(&s, "10.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	path := filepath.Join(b.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// The first pull of a 100k list: every entry added, store and kernel.
func BenchmarkFirstPull100k(b *testing.B) {
	path := benchList(b, 100_000)
	for b.Loop() {
		b.StopTimer()
		svc, _ := newService(b)
		f, err := New(Config{Name: "big", File: path, Interval: time.Hour, Duration: 24 * time.Hour, MaxEntries: 1 << 20, MaxBytes: 1 << 30}, svc)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if res, err := f.Pull(context.Background()); err != nil || res.Added != 100_000 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}

// A pull of the same 100k list: nothing due, nothing written.
func BenchmarkUnchangedPull100k(b *testing.B) {
	path := benchList(b, 100_000)
	svc, _ := newService(b)
	f, err := New(Config{Name: "big", File: path, Interval: time.Hour, Duration: 24 * time.Hour, MaxEntries: 1 << 20, MaxBytes: 1 << 30}, svc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Pull(context.Background()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err := f.Pull(context.Background()); err != nil || res.Added+res.Renewed+res.Removed != 0 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
