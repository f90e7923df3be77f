package acquire

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
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

// TestReplayDamage: a gzip cut short, one corrupted mid-stream and one with
// a bad header are each reported naming the file and how far it was read;
// the other inputs are still read in full, and cut lines are counted.
func TestReplayDamage(t *testing.T) {
	dir := t.TempDir()
	var plain strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&plain, "Nov 25 06:31:17 web1 sshd[%d]: Failed password for root from 198.18.%d.%d port 22 ssh2\n", i, i/256, i%256)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(plain.String()))
	zw.Close()
	whole := b.Bytes()
	corrupt := append([]byte(nil), whole...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	long := filepath.Join(dir, "long.log")
	files := map[string][]byte{
		"truncated.gz": whole[:len(whole)*2/3],
		"corrupt.gz":   corrupt,
		"header.gz":    {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad},
		"long.log":     []byte("short\n" + strings.Repeat("x", 200) + "\nafter\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inputs := []string{filepath.Join(dir, "truncated.gz"), long, filepath.Join(dir, "corrupt.gz"), filepath.Join(dir, "header.gz")}
	r, err := OpenReplay(inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.MaxLineLength = 120
	ls := collectReplay(t, r)
	ds := r.Damaged()
	if len(ds) != 3 {
		t.Fatalf("damage: %v", ds)
	}
	for i, want := range []string{inputs[0], inputs[2], inputs[3]} {
		d := ds[i]
		if d.Input != want || !strings.Contains(d.Error(), want) {
			t.Fatalf("damage %d: %v, want it to name %s", i, d, want)
		}
		if i < 2 && (d.Lines == 0 || d.Lines >= 2000 || d.Offset <= 0 || !strings.Contains(d.Error(), fmt.Sprintf("line %d (byte %d)", d.Lines, d.Offset))) {
			t.Fatalf("damage %d does not say where it broke: %+v", i, d)
		}
	}
	// Lines before the damage are replayed, and whole files in full.
	truncLines := int(ds[0].Lines)
	if len(ls) < truncLines+3 || ls[truncLines].Raw != "short" || ls[truncLines+2].Raw != "after" {
		t.Fatalf("%d lines replayed; the plain file after the damage was not read whole", len(ls))
	}
	// The corrupt gzip may yield garbage (cut too) before its damage shows.
	if st := r.Stats(); ls[truncLines+1].Raw != strings.Repeat("x", 120) || st.Cut < 1 || st.Errors != 3 {
		t.Fatalf("cut line %.20q..., stats: %+v", ls[truncLines+1].Raw, st)
	}
}
