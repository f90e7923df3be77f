package main

import (
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/hubstore"
	"github.com/moatsec/moat/internal/config"
)

// hubRow is one line of moat hub list.
type hubRow struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Status: available (in the source only), installed, tainted,
	// missing, update (the source has another version) or active
	// (shipped or local content the store does not manage).
	Status string `json:"status"`
	// Loaded is the layer the engine takes the item from, "" if none.
	Loaded string `json:"loaded,omitempty"`
	// Shadows is the layer the loaded item overrides, if any.
	Shadows string `json:"shadows,omitempty"`
	Path    string `json:"path,omitempty"`
}

func (a *app) hubListCmd() *cobra.Command {
	var sf hubSourceFlags
	var activeOnly bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List hub items: the source's, the installed ones and the ones loaded, with where each is loaded from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			var src *hubstore.Source
			if !activeOnly {
				// Without an explicit --source, a missing default source
				// only narrows the listing to what is loaded.
				if _, err := os.Stat(sf.source); err == nil || cmd.Flags().Changed("source") {
					if src, err = sf.open(cmd); err != nil {
						return err
					}
					defer src.Close()
				}
			}
			rows, err := hubList(cfg, src, activeOnly)
			if err != nil {
				return err
			}
			return listing[hubRow]{
				columns: []column[hubRow]{
					{"KIND", func(r hubRow) string { return r.Kind }},
					{"NAME", func(r hubRow) string { return r.Name }},
					{"VERSION", func(r hubRow) string { return dash(r.Version) }},
					{"STATUS", func(r hubRow) string { return r.Status }},
					{"LOADED FROM", func(r hubRow) string {
						if r.Shadows != "" {
							return r.Loaded + " (over " + r.Shadows + ")"
						}
						return dash(r.Loaded)
					}},
				},
				raw:   func(r hubRow) string { return r.Kind + "/" + r.Name },
				empty: "no hub items",
				footer: func(n int) string {
					if src == nil {
						return fmt.Sprintf("%d item(s)", n)
					}
					return fmt.Sprintf("%d item(s); source %s", n, src.Origin)
				},
			}.render(a.stdout, format, rows)
		},
	}
	sf.add(cmd)
	cmd.Flags().BoolVar(&activeOnly, "loaded", false, "list only the items the engine loads")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// hubList joins the source's items, the store's records and the layers
// the engine loads into one row per item.
func hubList(cfg config.Config, src *hubstore.Source, activeOnly bool) ([]hubRow, error) {
	c, err := resolveContent(cfg)
	if err != nil {
		return nil, err
	}
	defer c.cleanup()
	layers, err := hubLayers(cfg, func() (string, error) { return c.hubDir, nil })
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		layers = []hubLayer{{layerLocal, c.hubDir}}
	}
	label := map[string]string{}
	var dirs []string
	for _, l := range layers {
		label[l.dir] = l.label
		dirs = append(dirs, l.dir)
	}
	h, err := hub.Open(dirs[0], dirs[1:]...)
	if err != nil {
		return nil, err
	}
	store, err := hubstore.Open(hubStoreDir(cfg), cfg.Hub.Data)
	if err != nil {
		return nil, err
	}
	rows := map[string]*hubRow{}
	row := func(kind, name string) *hubRow {
		k := kind + "/" + name
		if rows[k] == nil {
			rows[k] = &hubRow{Kind: kind, Name: name}
		}
		return rows[k]
	}
	for _, kind := range hubstore.Kinds {
		for _, it := range h.Items(kind) {
			r := row(kind, it.Name)
			r.Loaded, r.Status, r.Path = label[it.Layer], "active", it.Path
		}
	}
	for _, it := range h.Shadowed() {
		if r := rows[it.Kind+"/"+it.Name]; r != nil && r.Shadows == "" {
			r.Shadows = label[it.Layer]
		}
	}
	for _, rec := range store.Records() {
		r := row(rec.Kind, rec.Name)
		r.Version = rec.Version
		if r.Status, err = store.FileState(rec); err != nil {
			return nil, err
		}
		if r.Status == hubstore.StateOK {
			r.Status = "installed"
		}
	}
	if src != nil {
		for _, it := range src.Items() {
			r := rows[it.Ref()]
			if r == nil {
				if activeOnly {
					continue
				}
				r = row(it.Kind, it.Name)
				r.Status, r.Version = "available", it.Version
				continue
			}
			if rec, err := store.Lookup(it.Ref()); err == nil && r.Status == "installed" && rec.SHA256 != it.SHA256 {
				r.Status = "update"
				if it.Version != "" && it.Version != rec.Version {
					r.Status = "update to " + it.Version
				}
			}
		}
	}
	out := make([]hubRow, 0, len(rows))
	for _, r := range rows {
		if activeOnly && r.Loaded == "" {
			continue
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		ki, kj := slices.Index(hubstore.Kinds, out[i].Kind), slices.Index(hubstore.Kinds, out[j].Kind)
		if ki != kj {
			return ki < kj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
