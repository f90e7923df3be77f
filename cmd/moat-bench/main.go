// Command moat-bench runs moat's benchmark suite (make bench): live
// latency, replay throughput and accuracy against the peers, the cost of a
// million decisions and the drop rate, each repeated, into a JSON result,
// a table and SVG charts. The work is in internal/bench.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moatsec/moat/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "latency-child" {
		return bench.LatencyChild(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("moat-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "the quick mode (also BENCH_QUICK=1): small corpora, one repetition")
	out := fs.String("out", "bench-out", "directory for result.json, table.txt and the charts")
	docs := fs.String("docs", "", "also write the charts and the table into this directory's performance.md (the full run: docs)")
	cache := fs.String("cache", filepath.Join(os.TempDir(), "moat-bench-cache"), "directory keeping generated corpora between runs")
	reps := fs.Int("reps", 0, "repetitions of every part (default: 1 quick; 3 full, 2 for the 1M-line replays)")
	only := fs.String("only", "", "comma-separated parts to run: throughput,peers,latency,peerlive,scale,drop")
	check := fs.String("check", "", "only validate this result.json (exit 1 when it is not a complete result)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *check != "" {
		if err := bench.Check(*check); err != nil {
			fmt.Fprintln(stderr, "moat-bench:", err)
			return 1
		}
		fmt.Fprintln(stdout, "moat-bench:", *check, "is a valid result")
		return 0
	}
	o := bench.FullOptions()
	if *quick {
		o = bench.QuickOptions()
	}
	if *reps > 0 {
		o.Reps, o.ThroughputReps = *reps, 0
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	repo, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "moat-bench:", err)
		return 1
	}
	o.Repo, o.OutDir, o.CacheDir, o.Log = repo, *out, *cache, stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "moat-bench:", err)
		return 1
	}
	fmt.Fprint(stdout, bench.Table(res))
	if *docs != "" {
		if err := bench.WriteDocs(*docs, res); err != nil {
			fmt.Fprintln(stderr, "moat-bench:", err)
			return 1
		}
	}
	if len(res.Errors) > 0 {
		enc := json.NewEncoder(stderr)
		enc.SetIndent("", "  ")
		enc.Encode(res.Errors)
		return 1
	}
	return 0
}
