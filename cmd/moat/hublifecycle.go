package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/internal/config"
)

// defaultHubSource is Debian's crowdsec package snapshot: a hub that is
// already on the disk, so the default never reaches for the network.
const defaultHubSource = "/usr/share/crowdsec/hub"

// hubSourceFlags are the flags of the commands that read a source.
type hubSourceFlags struct {
	source, data, patterns string
}

func (f *hubSourceFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.source, "source", defaultHubSource, "hub source: a hub directory (with or without .index.json) or a .tar.gz bundle of one")
	cmd.Flags().StringVar(&f.data, "data-source", "", "where the source's data files are (default: data/ in or beside the source)")
	cmd.Flags().StringVar(&f.patterns, "patterns-source", "", "where the source's grok pattern files are (default: patterns/ in or beside the source; /etc/crowdsec/patterns for Debian's snapshot)")
}

func (f *hubSourceFlags) open(cmd *cobra.Command) (*hubstore.Source, error) {
	src, err := hubstore.OpenSource(f.source, hubstore.SourceOptions{DataDir: f.data, PatternDir: f.patterns})
	if err != nil {
		return nil, err
	}
	return src, nil
}

// hubLifecycleCmds are moat hub list, install, remove, upgrade and inspect.
func (a *app) hubLifecycleCmds() []*cobra.Command {
	return []*cobra.Command{a.hubListCmd(), a.hubInstallCmd(), a.hubRemoveCmd(), a.hubUpgradeCmd(), a.hubInspectCmd()}
}

// changeListing prints what an install, upgrade or remove did.
var changeListing = listing[hubstore.Change]{
	columns: []column[hubstore.Change]{
		{"ITEM", func(c hubstore.Change) string { return c.Ref }},
		{"ACTION", func(c hubstore.Change) string { return c.Action }},
		{"FROM", func(c hubstore.Change) string { return dash(c.From) }},
		{"TO", func(c hubstore.Change) string { return dash(c.To) }},
		{"NOTE", func(c hubstore.Change) string { return c.Note }},
	},
	raw:   func(c hubstore.Change) string { return c.Action + " " + c.Ref },
	empty: "nothing to do",
}

// changeStore runs op on the store (applyStore) and prints what it did.
func (a *app) changeStore(cfg config.Config, st *hubstore.Store, op func() ([]hubstore.Change, error)) error {
	format, err := a.outputFormat("table")
	if err != nil {
		return err
	}
	changes, err := applyStore(cfg, st, op)
	if err != nil {
		return err
	}
	if err := changeListing.render(a.stdout, format, changes); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, "moat: reload the daemon (systemctl reload moat) to use the changes")
	return nil
}

// applyStore runs op on the store, then checks that the engine loads
// the result, as the daemon would on its next start or reload; if not,
// the store is put back as it was, so a hub command never leaves moat
// unable to start.
func applyStore(cfg config.Config, st *hubstore.Store, op func() ([]hubstore.Change, error)) ([]hubstore.Change, error) {
	restore, discard, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	changes, opErr := op()
	if opErr == nil {
		opErr = checkEngine(cfg)
	}
	if opErr != nil {
		if rerr := restore(); rerr != nil {
			return nil, fmt.Errorf("%w; and putting the hub store back failed: %v", opErr, rerr)
		}
		if errors.Is(opErr, hubstore.ErrNotFound) {
			return nil, usageError{opErr}
		}
		return nil, fmt.Errorf("%w (nothing changed)", opErr)
	}
	discard()
	return changes, nil
}

func checkEngine(cfg config.Config) error {
	c, err := openContent(cfg)
	if err != nil {
		return err
	}
	defer c.cleanup()
	if _, err := loadEngine(cfg, c, false, 0); err != nil {
		return fmt.Errorf("the result does not load, moat would refuse it: %w", err)
	}
	return nil
}

func (a *app) openStore(cmd *cobra.Command) (config.Config, *hubstore.Store, error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return cfg, nil, err
	}
	st, err := hubstore.Open(hubStoreDir(cfg), cfg.Hub.Data)
	return cfg, st, err
}

// lockedStore is openStore for a change: the store is read under its
// lock, released when the command ends.
func (a *app) lockedStore(cmd *cobra.Command) (config.Config, *hubstore.Store, func(), error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return cfg, nil, nil, err
	}
	unlock, err := hubstore.Lock(hubStoreDir(cfg))
	if err != nil {
		return cfg, nil, nil, err
	}
	st, err := hubstore.Open(hubStoreDir(cfg), cfg.Hub.Data)
	if err != nil {
		unlock()
		return cfg, nil, nil, err
	}
	return cfg, st, unlock, nil
}

// changeFromSource runs op on the locked store with the source sf names.
func (a *app) changeFromSource(cmd *cobra.Command, sf *hubSourceFlags, op func(*hubstore.Store, *hubstore.Source) ([]hubstore.Change, error)) error {
	cfg, st, unlock, err := a.lockedStore(cmd)
	if err != nil {
		return err
	}
	defer unlock()
	src, err := sf.open(cmd)
	if err != nil {
		return err
	}
	defer src.Close()
	return a.changeStore(cfg, st, func() ([]hubstore.Change, error) { return op(st, src) })
}

func (a *app) hubInstallCmd() *cobra.Command {
	var sf hubSourceFlags
	var opts hubstore.InstallOptions
	cmd := &cobra.Command{
		Use:   "install NAME...",
		Short: "Install hub items and what they depend on from a local hub source",
		Long: `Copies the named collections, parsers, scenarios or postoverflows, and
everything a collection pulls in, from the source into state_dir/hub, and the
data files they name into hub.data, then records each item's version and
sha256. Nothing is downloaded: a data file the source lacks stops the install
(unless --allow-missing-data). Items already installed are left as they are
(see upgrade).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			return a.changeFromSource(cmd, &sf, func(st *hubstore.Store, src *hubstore.Source) ([]hubstore.Change, error) {
				return st.Install(src, names, opts)
			})
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&opts.AllowMissingData, "allow-missing-data", false, "install even if the source lacks data files the items name")
	return cmd
}

func (a *app) hubUpgradeCmd() *cobra.Command {
	var sf hubSourceFlags
	var opts hubstore.InstallOptions
	cmd := &cobra.Command{
		Use:   "upgrade [NAME...]",
		Short: "Replace installed items (all, or the named ones) with the source's version; tainted items are kept",
		Long: `Replaces every installed item (or the named ones) whose file in the source
differs from the one installed. An item edited since it was installed is
reported as tainted and left untouched; files under hub.dir (the local layer)
are never touched.`,
		RunE: func(cmd *cobra.Command, names []string) error {
			return a.changeFromSource(cmd, &sf, func(st *hubstore.Store, src *hubstore.Source) ([]hubstore.Change, error) {
				return st.Upgrade(src, names, opts)
			})
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&opts.AllowMissingData, "allow-missing-data", false, "upgrade even if the source lacks data files the items name")
	return cmd
}

func (a *app) hubRemoveCmd() *cobra.Command {
	var opts hubstore.RemoveOptions
	cmd := &cobra.Command{
		Use:   "remove NAME...",
		Short: "Remove installed items and the dependencies nothing else needs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			cfg, st, unlock, err := a.lockedStore(cmd)
			if err != nil {
				return err
			}
			defer unlock()
			return a.changeStore(cfg, st, func() ([]hubstore.Change, error) { return st.Remove(names, opts) })
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "remove tainted items too, losing their local edits")
	return cmd
}

func (a *app) hubInspectCmd() *cobra.Command {
	var sf hubSourceFlags
	var diff bool
	cmd := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show an item as installed and as the source offers it; --diff compares the two files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := a.openStore(cmd)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			var src *hubstore.Source
			if _, err := os.Stat(sf.source); err == nil || cmd.Flags().Changed("source") {
				if src, err = sf.open(cmd); err != nil {
					return err
				}
				defer src.Close()
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			in, err := st.Inspect(src, args[0], diff)
			if errors.Is(err, hubstore.ErrNotFound) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			raw := []string{in.Ref}
			return result{value: in, raw: raw, text: func(w io.Writer) error { return printInspection(w, in) }}.render(a.stdout, format)
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&diff, "diff", false, "show the installed file against the source's, as a unified diff")
	return cmd
}

func printInspection(w io.Writer, in hubstore.Inspection) error {
	var b strings.Builder
	fmt.Fprintf(&b, "item:       %s\n", esc(in.Ref))
	if r := in.Installed; r != nil {
		fmt.Fprintf(&b, "installed:  version %s, sha256 %s, %s\n", esc(dash(r.Version)), r.SHA256, in.State)
		if in.CurrentSHA256 != "" {
			fmt.Fprintf(&b, "  edited:   sha256 %s now\n", in.CurrentSHA256)
		}
		fmt.Fprintf(&b, "  path:     %s\n", esc(r.Path))
		fmt.Fprintf(&b, "  from:     %s at %s\n", esc(r.Source), r.InstalledAt.Format("2006-01-02 15:04:05Z"))
		if !r.Explicit {
			fmt.Fprintf(&b, "  as a dependency\n")
		}
	} else {
		fmt.Fprintf(&b, "installed:  no\n")
	}
	if it := in.Available; it != nil {
		fmt.Fprintf(&b, "source:     version %s, sha256 %s\n", esc(dash(it.Version)), it.SHA256)
		for _, d := range it.Deps {
			fmt.Fprintf(&b, "  needs:    %s\n", esc(d))
		}
		for _, d := range it.Data {
			fmt.Fprintf(&b, "  data:     %s\n", esc(d))
		}
	}
	if in.Diff != "" {
		b.WriteString("\n")
		for _, l := range strings.SplitAfter(strings.TrimSuffix(in.Diff, "\n"), "\n") {
			b.WriteString(esc(strings.TrimSuffix(l, "\n")) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
