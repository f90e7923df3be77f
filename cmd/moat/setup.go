package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/detect/setup"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/packaging"
)

// setupFlags are moat setup's flags.
type setupFlags struct {
	dryRun  bool
	noHub   bool
	root    string
	since   time.Duration
	hub     hubSourceFlags
	install hubstore.InstallOptions
}

// setupResult is what moat setup prints: the plan and, without
// --dry-run, what it changed.
type setupResult struct {
	DryRun bool   `json:"dry_run"`
	Root   string `json:"root"`
	// File is setup's acquisition file; Written the files it wrote
	// (none on a dry run, or when there was nothing to write).
	File       string            `json:"file"`
	Plan       setup.Plan        `json:"plan"`
	Written    []string          `json:"written"`
	HubChanges []hubstore.Change `json:"hub_changes"`
}

func (a *app) setupCmd() *cobra.Command {
	var f setupFlags
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Find the services this host runs and read their logs: acquisition entries and hub collections",
		Long: `Looks for the services moat knows (sshd, nginx, apache2, postfix, dovecot,
exim4, mysql/mariadb, proftpd, vsftpd, haproxy) in the installed Debian
packages, the systemd unit files, the log files and the journal's
identifiers, and plans for each what reads its log and which collection
parses it. A log that an acquisition file reads already is never planned
again (every line would count twice), services that share a log file get
one reader, and the journal is preferred where the service logs to it.

With --dry-run it prints the plan and changes nothing. Without, it writes
the acquisition entries to acquis.d/moat-setup.yaml (its own file, rewritten
on each run; no other file is touched, and a missing acquis.d is created
with the shipped entries the daemon read from the fallback), installs from
the hub source the collections moat does not ship, and asks for a reload.
The main configuration is never changed: what needs an edit there (hub.items)
is printed.`,
		// cobra.NoArgs would make a stray argument exit 1, not 2.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("setup takes no arguments, got %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return a.setup(cmd, f) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and change nothing")
	fl.BoolVar(&f.noHub, "no-install", false, "write the acquisition but install no collection from the hub source")
	fl.StringVar(&f.root, "root", "/", "root directory of the host to examine (a mounted image or chroot: its dpkg status, units, logs and journal files)")
	fl.DurationVar(&f.since, "journal-since", 30*24*time.Hour, "a journal identifier counts as logging when it has an entry this recent")
	f.hub.add(cmd)
	fl.BoolVar(&f.install.AllowMissingData, "allow-missing-data", false, "install collections even if the source lacks data files they name")
	return cmd
}

func (a *app) setup(cmd *cobra.Command, f setupFlags) error {
	format, err := a.outputFormat("table")
	if err != nil {
		return err
	}
	if st, err := os.Stat(f.root); err != nil || !st.IsDir() {
		return usagef("--root %q: not a directory", f.root)
	}
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return err
	}
	if err := cfg.CheckPaths(); err != nil {
		return err
	}
	if cfg.Acquisition.Dir == "" {
		return usagef("acquisition.dir is empty: setup has nowhere to write")
	}
	fallback, err := acquisFallback(cfg)
	if err != nil {
		return err
	}
	existing, err := setup.LoadExisting(cfg.Acquisition.Dir, fallback)
	if err != nil {
		return contentError{err}
	}
	opts := setup.PlanOptions{Existing: existing, HubItems: cfg.Hub.Items}
	if opts.Loaded, err = loadedCollections(cfg); err != nil {
		return err
	}
	var src *hubstore.Source
	// Without an explicit --source, a missing default source only means
	// the plan cannot offer the hub's collections.
	if _, err := os.Stat(f.hub.source); err == nil || cmd.Flags().Changed("source") {
		if src, err = f.hub.open(cmd); err != nil {
			return err
		}
		defer src.Close()
		opts.HubCollections = map[string]bool{}
		for _, it := range src.Items() {
			if it.Kind == hub.Collections {
				opts.HubCollections[it.Name] = true
			}
		}
	}
	inv, err := detectHost(f)
	if err != nil {
		return err
	}
	plan := setup.BuildPlan(setup.Catalog(), inv, opts)
	if src == nil {
		plan.Notes = append(plan.Notes, fmt.Sprintf("no hub source at %s (apt-get install crowdsec, or --source): collections moat does not ship cannot be installed", f.hub.source))
	}
	res := setupResult{DryRun: f.dryRun, Root: f.root, File: filepath.Join(cfg.Acquisition.Dir, setup.OwnFile), Plan: plan,
		Written: []string{}, HubChanges: []hubstore.Change{}}
	if !f.dryRun {
		changes, written, err := a.applySetup(cmd, cfg, f, src, plan, existing)
		if err != nil {
			return err
		}
		res.HubChanges, res.Written = append(res.HubChanges, changes...), append(res.Written, written...)
	}
	if err := printSetup(a.stdout, format, res); err != nil {
		return err
	}
	switch {
	case f.dryRun:
		fmt.Fprintln(a.stderr, "moat: dry run: nothing changed (run moat setup without --dry-run to apply)")
	case f.noHub && len(plan.Installs()) > 0:
		fmt.Fprintf(a.stderr, "moat: collections not installed (--no-install): moat hub install %s; then reload the daemon (systemctl reload moat)\n", strings.Join(plan.Installs(), " "))
	case len(res.Written) > 0 || installed(res.HubChanges):
		fmt.Fprintln(a.stderr, "moat: reload the daemon (systemctl reload moat) to read the new sources")
	default:
		fmt.Fprintln(a.stderr, "moat: nothing to change")
	}
	return nil
}

// applySetup installs the plan's collections, then writes its
// acquisition: a failed install changes nothing (applyStore puts the
// store back), so no reader is left without its parsers.
func (a *app) applySetup(cmd *cobra.Command, cfg config.Config, f setupFlags, src *hubstore.Source, plan setup.Plan, ex setup.Existing) ([]hubstore.Change, []string, error) {
	var changes []hubstore.Change
	if names := plan.Installs(); len(names) > 0 && !f.noHub {
		_, st, unlock, err := a.lockedStore(cmd)
		if err != nil {
			return nil, nil, err
		}
		defer unlock()
		changes, err = applyStore(cfg, st, func() ([]hubstore.Change, error) { return st.Install(src, names, f.install) })
		if err != nil {
			return nil, nil, fmt.Errorf("install %s: %w; moat setup --no-install writes the acquisition alone", strings.Join(names, ", "), err)
		}
	}
	written, err := setup.Write(cfg.Acquisition.Dir, plan, ex)
	if err != nil {
		if len(changes) > 0 {
			err = fmt.Errorf("the collections were installed, but the acquisition was not written: %w", err)
		}
		return changes, nil, err
	}
	return changes, written, nil
}

// detectHost looks at the host at f.root. A journal that cannot be opened
// is a note, not a failure: the plan then prefers log files.
func detectHost(f setupFlags) (setup.Inventory, error) {
	j, err := setup.OpenJournal(f.root)
	var note string
	if err != nil {
		note = fmt.Sprintf("journal not opened, so log files are preferred: %v", err)
	} else if j != nil {
		defer j.Close()
	}
	inv, err := setup.Detect(setup.Catalog(), setup.DetectOptions{Root: f.root, Journal: j, Since: time.Now().Add(-f.since)})
	if err != nil {
		return inv, fmt.Errorf("detect services under %s: %w", f.root, err)
	}
	if note != "" {
		inv.Notes = append(inv.Notes, note)
	}
	return inv, nil
}

// acquisFallback is what the daemon reads while the acquisition directory
// is missing, as resolveContent picks it: the packaged copy, else the
// built-in one. A directory set elsewhere has none: CheckPaths has made
// sure it exists.
func acquisFallback(cfg config.Config) (fs.FS, error) {
	if filepath.Clean(cfg.Acquisition.Dir) != config.Default().Acquisition.Dir {
		return nil, nil
	}
	shared := filepath.Join(sharedDir, "acquis.d")
	if st, err := os.Stat(shared); err == nil && st.IsDir() {
		return os.DirFS(shared), nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("content directory %s: %w", shared, err)
	}
	sub, err := fs.Sub(packaging.Files, "acquis.d")
	if err != nil {
		return nil, fmt.Errorf("built-in acquisition: %w", err)
	}
	return sub, nil
}

// loadedCollections are the collections of the hub layers the engine
// loads (shipped, installed and local).
func loadedCollections(cfg config.Config) (map[string]bool, error) {
	c, err := resolveContent(cfg)
	if err != nil {
		return nil, err
	}
	defer c.cleanup()
	h, err := hub.Open(c.hubDir, c.hubOverlays...)
	if err != nil {
		return nil, contentError{err}
	}
	out := map[string]bool{}
	for _, it := range h.Items(hub.Collections) {
		out[it.Name] = true
	}
	return out, nil
}

func installed(changes []hubstore.Change) bool {
	for _, c := range changes {
		if c.Action == hubstore.Installed {
			return true
		}
	}
	return false
}
