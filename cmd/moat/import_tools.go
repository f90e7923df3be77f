package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/internal/importer"
	"github.com/moatsec/moat/internal/importer/fail2ban"
)

// importCmd is moat import: another tool's configuration translated into
// a moat.yaml fragment.
func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Translate a fail2ban or CrowdSec configuration into moat's",
	}
	cmd.AddCommand(a.importFail2banCmd(), a.importCrowdSecCmd())
	return cmd
}

func (a *app) importFail2banCmd() *cobra.Command {
	var out, db string
	cmd := &cobra.Command{
		Use:   "fail2ban [DIR]",
		Short: "Translate fail2ban's jails (default " + fail2ban.DefaultDir + ") and active bans",
		Long: `Reads jail.conf, jail.d/*.conf, jail.local and jail.d/*.local as fail2ban
does and prints a moat.yaml fragment: the enabled jails' hub collections,
ignoreip as the allowlist, maxretry/findtime/bantime as scenario overrides,
bantime.increment as escalation profiles. With --out DIR it writes
DIR/moat.yaml, the acquisition files it names, profiles.yaml when needed,
decisions.csv (fail2ban's active bans, for moat decisions import) and
report.txt (what has no moat equivalent).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := fail2ban.DefaultDir
			if len(args) == 1 {
				dir = args[0]
			}
			c, err := fail2ban.Load(dir)
			if errors.Is(err, fail2ban.ErrNoConfig) {
				return usagef("%v", err)
			}
			if err != nil {
				return err
			}
			if out != "" {
				if out, err = filepath.Abs(out); err != nil {
					return err
				}
			}
			res, err := fail2ban.Translate(cmd.Context(), c, fail2ban.Options{OutDir: out, DB: db, Now: time.Now()})
			if err != nil {
				return err
			}
			return a.writeImport(res, out, "fail2ban "+dir)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write moat.yaml and the files it names into this directory instead of printing the fragment")
	cmd.Flags().StringVar(&db, "db", fail2ban.DefaultDB, "fail2ban's database, for its active bans (\"\" skips them)")
	return cmd
}

// writeImport prints the fragment, or writes the whole result into out
// and says where.
func (a *app) writeImport(res *importer.Result, out, origin string) error {
	if out == "" {
		y, err := res.YAML(origin)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(y)
		if len(res.Decisions) > 0 {
			fmt.Fprintf(a.stderr, "%d active bans left out: run with --out DIR to write them for moat decisions import\n", len(res.Decisions))
		}
		if h := res.HubInstall; h != nil {
			fmt.Fprintf(a.stderr, "hub.items needs %d hub item(s) installed first: moat %s\n", len(h.Items), strings.Join(h.Args(""), " "))
		}
		return err
	}
	if err := res.Write(out, origin); err != nil {
		return err
	}
	cfg := filepath.Join(out, importer.ConfigFile)
	if h := res.HubInstall; h != nil {
		fmt.Fprintf(a.stdout, "wrote %s; it runs %d hub item(s) (%s) to install first:\n  moat %s\n", cfg, len(h.Items), filepath.Join(out, importer.HubItemsFile), strings.Join(h.Args(cfg), " "))
		fmt.Fprintf(a.stdout, "then check: moat config check --config %s\n", cfg)
	} else {
		fmt.Fprintf(a.stdout, "wrote %s (check: moat config check --config %s)\n", cfg, cfg)
	}
	if len(res.Decisions) > 0 {
		fmt.Fprintf(a.stdout, "%d active bans in %s (moat decisions import %s)\n", len(res.Decisions), filepath.Join(out, importer.DecisionsFile), filepath.Join(out, importer.DecisionsFile))
	}
	fmt.Fprintf(a.stdout, "%d notes in %s\n", len(res.Report), filepath.Join(out, importer.ReportFile))
	return nil
}
