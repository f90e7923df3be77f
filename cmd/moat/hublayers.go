package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/internal/config"
)

// Where an active hub item comes from, lowest layer first.
const (
	layerShipped   = "shipped"   // /usr/share/moat/hub or the built-in copy
	layerInstalled = "installed" // moat hub install, under state_dir/hub
	layerLocal     = "local"     // hub.dir: the admin's own files
)

type hubLayer struct{ label, dir string }

// hubStoreDir is where moat hub install puts items.
func hubStoreDir(cfg config.Config) string { return filepath.Join(cfg.StateDir, "hub") }

// hubLayers lists the hub directories the engine loads, lowest first; a
// name in a higher layer replaces the same name below. At its default
// place hub.dir adds to the shipped content instead of hiding it, so
// dropping one file into /etc/moat/hub no longer turns every shipped
// scenario off. A hub.dir set elsewhere stays a whole replacement for the
// shipped content, as test and hub-suite setups rely on. Installed items
// sit between: local files override them, and upgrades never touch local.
func hubLayers(cfg config.Config, shipped func() (string, error)) ([]hubLayer, error) {
	var layers []hubLayer
	atDefault := cfg.Hub.Dir == "" || filepath.Clean(cfg.Hub.Dir) == config.Default().Hub.Dir
	if atDefault {
		dir, err := shipped()
		if err != nil {
			return nil, err
		}
		layers = append(layers, hubLayer{layerShipped, dir})
	}
	st, err := hubstore.Open(hubStoreDir(cfg), cfg.Hub.Data)
	if err != nil {
		return nil, err
	}
	if st.Exists() {
		layers = append(layers, hubLayer{layerInstalled, st.Dir})
	}
	if cfg.Hub.Dir != "" {
		if fi, err := os.Stat(cfg.Hub.Dir); err == nil && fi.IsDir() {
			layers = append(layers, hubLayer{layerLocal, cfg.Hub.Dir})
		}
	}
	return layers, nil
}

// layerHub resolves the hub layers into the base directory and overlays
// the engine takes. pick is resolveContent's fallback chain.
func layerHub(cfg config.Config, pick func(configured, sub string) (string, error)) (string, []string, error) {
	layers, err := hubLayers(cfg, func() (string, error) { return pick("", "hub") })
	if err != nil {
		return "", nil, err
	}
	if len(layers) == 0 {
		// Only a hub.dir set elsewhere gets here, and CheckPaths has
		// made sure it exists; keep today's error path for the rest.
		dir, err := pick(cfg.Hub.Dir, "hub")
		return dir, nil, err
	}
	var overlays []string
	for _, l := range layers[1:] {
		overlays = append(overlays, l.dir)
	}
	return layers[0].dir, overlays, nil
}

// layerPatterns adds the grok pattern files installed with hub items to
// the resolved pattern directory. The engine reads one directory, so both
// are copied into a private one; the resolved directory's files load last
// and win a name both define, so an installed file cannot change how
// moat's own parsers match.
func layerPatterns(cfg config.Config, c *content) error {
	st, err := hubstore.Open(hubStoreDir(cfg), cfg.Hub.Data)
	if err != nil {
		return err
	}
	installed := st.Patterns()
	if installed == "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "moat-patterns-")
	if err != nil {
		return fmt.Errorf("merge grok patterns: %w", err)
	}
	prev := c.cleanup
	c.cleanup = func() { os.RemoveAll(dir); prev() }
	// The grok loader reads a directory in name order.
	for _, l := range []struct{ from, prefix string }{{installed, "0-hub-"}, {c.patternDir, "1-"}} {
		ents, err := os.ReadDir(l.from)
		if err != nil {
			return fmt.Errorf("merge grok patterns: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || e.Name() == "LICENSE" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(l.from, e.Name()))
			if err != nil {
				return fmt.Errorf("merge grok patterns: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dir, l.prefix+e.Name()), b, 0o644); err != nil {
				return fmt.Errorf("merge grok patterns: %w", err)
			}
		}
	}
	c.patternDir = dir
	return nil
}

// hubStatus adds to moat status how many hub items load from each layer
// and how many installed ones are tainted (moat hub list --loaded names
// them). It reads the configuration the command was given, the one the
// daemon reads too; it adds nothing when that cannot be read, so status
// never fails on it.
func (a *app) hubStatus(cmd *cobra.Command, counters map[string]int64) {
	cfg, err := a.loadConfig(cmd)
	if err != nil || counters == nil {
		return
	}
	rows, err := hubList(cfg, nil, true)
	if err != nil {
		return
	}
	for _, l := range []string{layerShipped, layerInstalled, layerLocal} {
		counters["hub_items_"+l] = 0
	}
	for _, r := range rows {
		counters["hub_items_"+r.Loaded]++
		if r.Shadows != "" {
			counters["hub_items_overriding"]++
		}
		if r.Status == hubstore.StateTainted {
			counters["hub_items_tainted"]++
		}
	}
}
