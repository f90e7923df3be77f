package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/internal/model"
)

func (a *app) replayCmd() *cobra.Command {
	var (
		logType    string
		journalDir string
		matches    []string
		year       int
		workers    int
	)
	cmd := &cobra.Command{
		Use:   "replay FILE... | - | --journal-dir DIR",
		Short: "Replay cold logs through the parsers and scenarios and print the alerts",
		Long: `Replays logs after the fact: plain or gzip files, "-" for stdin, or a
journal directory. Buckets leak on the timestamps inside the log, not the
wall clock, so the result is the same whenever it runs. Syslog dates without a
year take --year (default: the current year). Nothing is banned.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (journalDir == "") {
				return usagef("give log files (or -) or --journal-dir, not both")
			}
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			c, err := openContent(cfg)
			if err != nil {
				return err
			}
			defer c.cleanup()
			eng, err := loadEngine(cfg, c, true, year)
			if err != nil {
				return err
			}
			labels := map[string]string{"type": logType}
			var r *acquire.Replay
			if journalDir != "" {
				r, err = acquire.OpenJournalDir(journalDir, matches, labels)
			} else {
				r, err = acquire.OpenReplay(args, labels)
			}
			if err != nil {
				return err
			}
			defer r.Close()
			var bar io.Writer
			if f, ok := a.stderr.(*os.File); ok && isTerminal(f) {
				bar = f
			}
			if n := eng.Workers(workers); n < workers {
				fmt.Fprintf(a.stderr, "moat: parsing on %d worker(s), not %d: a parser keeps state from one line to the next\n", n, workers)
			}
			spill, err := newAlertSpill()
			if err != nil {
				return err
			}
			defer spill.Close()
			if err := replay(cmd.Context(), eng, r, workers, bar, spill.add); err != nil {
				return err
			}
			warnUntimed(a.stderr, eng.Stats().Scenarios.Scenarios)
			if cut := r.Stats().Cut; cut > 0 {
				fmt.Fprintf(a.stderr, "moat: warning: %d lines longer than %d bytes were cut to that length\n", cut, r.MaxLineLength)
			}
			if err := spill.write(a.stdout, format); err != nil {
				return err
			}
			// The alerts of what could be read are printed, but a damaged
			// input makes the replay a failure: its result is incomplete.
			damaged := r.Damaged()
			for _, d := range damaged {
				fmt.Fprintf(a.stderr, "moat: %s\n", esc(d.Error()))
			}
			if len(damaged) > 0 {
				return fmt.Errorf("replay incomplete: %d damaged input(s)", len(damaged))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&logType, "type", "syslog", "acquisition label type: selects the s00 parsers (syslog, nginx, apache2, ...)")
	f.StringVar(&journalDir, "journal-dir", "", "replay a journal directory instead of files")
	f.StringSliceVar(&matches, "match", nil, "journal match FIELD=VALUE (repeatable), with --journal-dir")
	f.IntVar(&year, "year", 0, "year of syslog dates that have none (default: the current year)")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "goroutines parsing lines; buckets still see them in input order, so alerts do not depend on it")
	return cmd
}

// replay runs every line of r through eng, in order, with up to workers
// parse goroutines, and hands the alerts to sink, those the end of the
// input flushes last. With bar set, it draws a progress line there.
func replay(ctx context.Context, eng *engine.Engine, r *acquire.Replay, workers int, bar io.Writer, sink func([]model.Alert)) error {
	g, ctx := errgroup.WithContext(ctx)
	lines := make(chan detect.Line, 4096)
	g.Go(func() error {
		defer close(lines)
		return r.Stream(ctx, lines)
	})
	g.Go(func() error {
		start := time.Now()
		next := start
		err := eng.Run(ctx, lines, workers, func(_ detect.Line, a []model.Alert) {
			if len(a) > 0 {
				sink(a)
			}
			if bar != nil && time.Now().After(next) {
				drawProgress(bar, r.Progress(), time.Since(start))
				next = time.Now().Add(200 * time.Millisecond)
			}
		})
		if err != nil {
			return err
		}
		if bar != nil {
			drawProgress(bar, r.Progress(), time.Since(start))
			fmt.Fprintln(bar)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	sink(eng.Flush())
	return nil
}

func drawProgress(w io.Writer, p acquire.Progress, elapsed time.Duration) {
	rate := float64(p.Lines) / max(elapsed.Seconds(), 1e-3)
	if p.BytesTotal > 0 {
		fmt.Fprintf(w, "\r%5.1f%%  %d lines  %.0f lines/s ", 100*float64(p.BytesRead)/float64(p.BytesTotal), p.Lines, rate)
		return
	}
	fmt.Fprintf(w, "\r%d lines  %.0f lines/s ", p.Lines, rate)
}

// warnUntimed says which scenarios saw events that had no time of their own:
// a replay cannot place them, so they filled no bucket.
func warnUntimed(w io.Writer, scs []scenario.ScenarioStats) {
	for _, sc := range scs {
		if sc.Untimed > 0 {
			fmt.Fprintf(w, "moat: %s: %d events without a parsed timestamp were not counted (is dateparse-enrich loaded?)\n", esc(sc.Name), sc.Untimed)
		}
	}
}
