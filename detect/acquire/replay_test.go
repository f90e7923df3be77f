package acquire

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/detect"
)

func collectReplay(t *testing.T, r *Replay) []detect.Line {
	t.Helper()
	out := make(chan detect.Line)
	done := make(chan error, 1)
	go func() { done <- r.Stream(context.Background(), out) }()
	var lines []detect.Line
	for {
		select {
		case l := <-out:
			lines = append(lines, l)
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return lines
		case <-time.After(20 * time.Second):
			t.Fatal("replay did not end")
		}
	}
}

func raws(ls []detect.Line) []string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Raw)
	}
	return s
}

func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantLines is the golden split of a testdata file: one line per newline,
// a final unterminated line kept, a trailing CR dropped.
func wantLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(data), "\n")
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.TrimSuffix(l, "\r"))
	}
	return out
}

func TestReplayPlainAndGzip(t *testing.T) {
	labels := map[string]string{"type": "syslog"}
	for _, name := range []string{"auth.log", "crlf-no-final-newline.log"} {
		t.Run(name, func(t *testing.T) {
			plain := filepath.Join("testdata", "replay", name)
			dir := t.TempDir()
			gz := filepath.Join(dir, name+".gz")
			gzipFile(t, plain, gz)
			// gzip told by its magic bytes, not by the name.
			disguised := filepath.Join(dir, name+".1")
			gzipFile(t, plain, disguised)

			want := wantLines(t, plain)
			var results [][]string
			for _, p := range []string{plain, gz, disguised} {
				r, err := OpenReplay([]string{p}, labels)
				if err != nil {
					t.Fatal(err)
				}
				ls := collectReplay(t, r)
				for _, l := range ls {
					if l.Src != p || l.Labels["type"] != "syslog" || l.Module != KindFile || !l.Process || l.ReadAt.IsZero() {
						t.Fatalf("line fields: %+v", l)
					}
				}
				fi, _ := os.Stat(p)
				pr := r.Progress()
				if pr.BytesRead != fi.Size() || pr.BytesTotal != fi.Size() || pr.Lines != uint64(len(want)) || !pr.Done {
					t.Fatalf("%s: progress %+v, file size %d, %d lines", p, pr, fi.Size(), len(want))
				}
				results = append(results, raws(ls))
			}
			for i, got := range results {
				if d := cmp.Diff(want, got); d != "" {
					t.Fatalf("input %d: lines differ (-want +got):\n%s", i, d)
				}
			}
		})
	}
}

func TestReplayStdinAndOrder(t *testing.T) {
	plain := filepath.Join("testdata", "replay", "auth.log")
	data, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Gzip on stdin too, in small writes.
		zw := gzip.NewWriter(pw)
		for i := 0; i < len(data); i += 7 {
			zw.Write(data[i:min(i+7, len(data))])
			zw.Flush()
		}
		zw.Close()
		pw.Close()
	}()
	second := filepath.Join("testdata", "replay", "crlf-no-final-newline.log")
	r, err := openReplay([]string{"-", second}, map[string]string{"type": "syslog"}, pr)
	if err != nil {
		t.Fatal(err)
	}
	ls := collectReplay(t, r)
	want := append(wantLines(t, plain), wantLines(t, second)...)
	if d := cmp.Diff(want, raws(ls)); d != "" {
		t.Fatalf("lines differ (-want +got):\n%s", d)
	}
	if ls[0].Src != "stdin" || ls[len(ls)-1].Src != second {
		t.Fatalf("sources: %q ... %q", ls[0].Src, ls[len(ls)-1].Src)
	}
	if p := r.Progress(); p.BytesTotal != -1 || p.Lines != uint64(len(want)) {
		t.Fatalf("progress: %+v", p)
	}
}

func TestReplayErrors(t *testing.T) {
	if _, err := OpenReplay([]string{filepath.Join(t.TempDir(), "missing.log")}, nil); err == nil {
		t.Fatal("missing file: no error")
	}
	if _, err := OpenReplay(nil, nil); err == nil {
		t.Fatal("no input: no error")
	}
	// A corrupt gzip is counted; the next file is still read.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gz")
	if err := os.WriteFile(bad, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad}, 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join("testdata", "replay", "auth.log")
	r, err := OpenReplay([]string{bad, good}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := collectReplay(t, r)
	if len(ls) != len(wantLines(t, good)) || r.Stats().Errors != 1 || r.Stats().LastError == nil {
		t.Fatalf("got %d lines, stats %+v", len(ls), r.Stats())
	}
}

func TestReplayStdinFromFile(t *testing.T) {
	plain := filepath.Join("testdata", "replay", "auth.log")
	f, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := openReplay([]string{"-"}, nil, f)
	if err != nil {
		t.Fatal(err)
	}
	ls := collectReplay(t, r)
	fi, _ := f.Stat()
	if p := r.Progress(); p.BytesTotal != fi.Size() || p.BytesRead != fi.Size() || len(ls) != len(wantLines(t, plain)) {
		t.Fatalf("stdin from a file: progress %+v, %d lines", p, len(ls))
	}
}
