package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

func corpusEngine(t *testing.T) *engine.Engine {
	t.Helper()
	root := repoRoot(t)
	eng, err := engine.New(engine.Config{
		HubDir:     filepath.Join(root, "packaging/hub"),
		PatternDir: filepath.Join(root, "packaging/patterns"),
		Year:       2026,
		Replay:     true,
		MaxBuckets: config.Default().Hub.MaxBuckets,
	})
	must(t, err)
	return eng
}

func alertKeys(alerts []model.Alert) []string {
	out := make([]string, len(alerts))
	for i, a := range alerts {
		out[i] = fmt.Sprintf("%s %s %d %s %s", a.Scenario, a.Value, a.EventsCount, a.Start.UTC().Format(time.RFC3339), a.Stop.UTC().Format(time.RFC3339))
	}
	sort.Strings(out)
	return out
}

// TestLiveTailMatchesReplay writes the corpus into a file that a live file
// source follows, in chunks that split lines, and checks the alerts equal
// those of a cold replay of the same file: no line lost, repeated or torn.
func TestLiveTailMatchesReplay(t *testing.T) {
	lines := "1M"
	if testing.Short() {
		lines = "50k"
	}
	dir := genCorpus(t, lines)
	corpus, err := os.ReadFile(filepath.Join(dir, "auth.log"))
	must(t, err)
	total := strings.Count(string(corpus), "\n")

	r, err := acquire.OpenReplay([]string{filepath.Join(dir, "auth.log")}, map[string]string{"type": "syslog"})
	must(t, err)
	defer r.Close()
	var cold []model.Alert
	must(t, replay(context.Background(), corpusEngine(t), r, 2, nil, func(a []model.Alert) { cold = append(cold, a...) }))
	if len(cold) == 0 {
		t.Fatal("the cold replay raised no alert")
	}

	live := filepath.Join(t.TempDir(), "auth.log")
	must(t, os.WriteFile(live, nil, 0o644))
	cfgs, err := acquire.LoadConfig("live.yaml", []byte("source: file\nfilenames: ["+live+"]\nlabels: {type: syslog}\n"))
	must(t, err)
	src, err := acquire.New(cfgs[0], t.TempDir())
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan detect.Line, 4096)
	streamErr := make(chan error, 1)
	go func() { streamErr <- src.Stream(ctx, out) }()
	// Give the source its first look at the empty file, so that it
	// follows it from the start.
	time.Sleep(200 * time.Millisecond)

	go func() {
		f, err := os.OpenFile(live, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		for rest := corpus; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(64<<10))
			if _, err := f.Write(rest[:n]); err != nil {
				panic(err)
			}
			rest = rest[n:]
		}
	}()

	eng := corpusEngine(t)
	var got []model.Alert
	timeout := time.After(10 * time.Minute)
	for n := 0; n < total; n++ {
		select {
		case l := <-out:
			got = append(got, eng.Process(l)...)
		case err := <-streamErr:
			t.Fatalf("the file source stopped after %d of %d lines: %v", n, total, err)
		case <-timeout:
			t.Fatalf("only %d of %d lines arrived", n, total)
		}
	}
	got = append(got, eng.Flush()...)
	select {
	case l := <-out:
		t.Fatalf("a line beyond the %d written arrived: %q", total, l.Raw)
	case <-time.After(300 * time.Millisecond):
	}

	want, have := alertKeys(cold), alertKeys(got)
	if strings.Join(want, "\n") != strings.Join(have, "\n") {
		t.Fatalf("live tail raised %d alerts, cold replay %d; they differ", len(have), len(want))
	}
	t.Logf("%d lines tailed live: the same %d alerts as the cold replay", total, len(want))
}
