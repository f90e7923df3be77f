package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hubtest"
)

func (a *app) hubCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Work with CrowdSec-hub-format content",
	}
	var opts hubtest.Options
	var geoDir string
	test := &cobra.Command{
		Use:   "test [NAME...]",
		Short: "Run the hub's own tests (DIR/.tests/NAME: config.yaml, log, parser.assert, scenario.assert)",
		Long: `Runs the hub test suite the way the hub's own runner judges it and prints
one line per test, PASS name or FAIL name: the first failing assert, then
"N passed, N failed". Exits 1 if any test failed.`,
		RunE: func(cmd *cobra.Command, names []string) error {
			if geoDir != "" {
				m := hubtest.NewMirror(geoDir)
				defer m.Close()
				opts.GeoIPFor = m.For
			}
			if opts.HubDir == "" {
				cfg, err := a.loadConfig(cmd)
				if err != nil {
					return err
				}
				opts.HubDir, opts.PatternDir, opts.DataDir = cfg.Hub.Dir, cfg.Hub.Patterns, cfg.Hub.Data
				db, err := openGeoIP(cfg)
				if err != nil {
					return err
				}
				if db != nil {
					defer db.Close()
					opts.GeoIP = db
				}
			}
			if opts.PatternDir == "" {
				opts.PatternDir = filepath.Join(opts.HubDir, "..", "patterns")
			}
			if opts.DataDir == "" {
				opts.DataDir = filepath.Join(opts.HubDir, "..", "data")
			}
			opts.Names = names
			results, err := hubtest.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range results {
				if r.Pass {
					fmt.Fprintf(a.stdout, "PASS %s\n", esc(r.Name))
					continue
				}
				failed++
				fmt.Fprintf(a.stdout, "FAIL %s: %s\n", esc(r.Name), esc(r.Failure))
			}
			fmt.Fprintf(a.stdout, "%d passed, %d failed\n", len(results)-failed, failed)
			if failed > 0 {
				return fmt.Errorf("%d of %d hub tests failed", failed, len(results))
			}
			return nil
		},
	}
	f := test.Flags()
	f.StringVar(&opts.HubDir, "hub", "", "hub directory (default: hub.dir from the configuration)")
	f.StringVar(&opts.PatternDir, "patterns", "", "grok pattern directory (default: beside the hub, or hub.patterns)")
	f.StringVar(&opts.DataDir, "data", "", "data file directory (default: beside the hub, or hub.data)")
	f.IntVar(&opts.Year, "year", 0, "year for log dates without one (default: inferred from the asserts)")
	f.StringVar(&geoDir, "geoip-dir", "", "GeoIP databases named as the files parsers' data URLs name (GeoLite2-City.mmdb, ...), each parser reading its own (default: geoip: from the configuration)")
	cmd.AddCommand(test)
	cmd.AddCommand(a.hubLifecycleCmds()...)
	return cmd
}
