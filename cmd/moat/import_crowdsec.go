package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/internal/importer"
	"github.com/moatsec/moat/internal/importer/crowdsec"
)

func (a *app) importCrowdSecCmd() *cobra.Command {
	var out, db string
	cmd := &cobra.Command{
		Use:   "crowdsec [DIR]",
		Short: "Translate CrowdSec's configuration (default " + crowdsec.DefaultDir + "), hub items and active decisions",
		Long: `Reads config.yaml (and config.yaml.local), the acquisition files, profiles.yaml,
simulation.yaml and the hub items enabled under DIR, and prints a moat.yaml
fragment: hub.items for what CrowdSec runs, whitelists of plain addresses and
ranges (and cscli allowlists) as the allowlist, simulation as simulation: and
scenario overrides. With --out DIR it writes DIR/moat.yaml, the acquisition
files and profiles.yaml it names (each document checked as moat loads it; one
moat refuses is left out), local hub items under DIR/hub, hub-items.txt (the
hub items to install, with the moat hub install command in the output),
decisions.csv (the active bans on addresses and ranges of CrowdSec's
database, for moat decisions import) and report.txt (what has no moat
equivalent).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := crowdsec.DefaultDir
			if len(args) == 1 {
				dir = args[0]
			}
			dir, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if out != "" {
				if out, err = filepath.Abs(out); err != nil {
					return err
				}
			}
			opts := crowdsec.Options{
				OutDir: out, DB: db, DBSet: cmd.Flags().Changed("db"), Now: time.Now(),
				CheckAcquisition: checkAcquisition,
				CheckProfiles: func(name string, data []byte) error {
					_, err := profile.Parse(name, data)
					return err
				},
			}
			res, err := crowdsec.Import(cmd.Context(), dir, opts)
			if errors.Is(err, crowdsec.ErrNoConfig) {
				return usagef("%v", err)
			}
			if err != nil {
				return err
			}
			return a.writeImport(res, out, "CrowdSec "+dir)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write moat.yaml and the files it names into this directory instead of printing the fragment")
	cmd.Flags().StringVar(&db, "db", "", "CrowdSec's SQLite database, for its active decisions and allowlists (default: db_config.db_path of config.yaml; \"\" skips it)")
	return cmd
}

// checkAcquisition loads acquisition files as moat loads its acquisition
// directory: each document valid, no source name used twice.
func checkAcquisition(files []importer.File) error {
	seen := map[string]string{}
	for _, f := range files {
		cs, err := acquire.LoadConfig(f.Name, f.Data)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if prev, ok := seen[c.Name]; ok {
				return fmt.Errorf("%s: name %q already used at %s", c.Where(), c.Name, prev)
			}
			seen[c.Name] = c.Where()
		}
	}
	return nil
}
