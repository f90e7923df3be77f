// Package hub reads a directory in the CrowdSec hub layout (parsers by
// stage, scenarios, postoverflows, collections) and resolves item names
// and collections into the files the parser and scenario packages load.
package hub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/internal/yamlerr"
)

// Kinds of hub items, named as the hub's directories.
const (
	Parsers       = "parsers"
	Scenarios     = "scenarios"
	Postoverflows = "postoverflows"
	Collections   = "collections"
	// Contexts are alert context files: what to keep of an overflow's
	// events with its alert (see detect/alertctx).
	Contexts = "contexts"
)

// ErrNotFound is wrapped by errors for items the hub does not hold.
var ErrNotFound = errors.New("hub item not found")

// Item is one hub file.
type Item struct {
	Kind  string
	Name  string // "author/name"
	Stage string // parsers and postoverflows only
	Path  string
	// Layer is the directory of Open the item was found in: with
	// overlays, it says which layer a name resolved to.
	Layer string
}

// Hub is an indexed hub directory.
type Hub struct {
	Dir   string
	items map[string]map[string]Item // kind -> name -> item
	// shadowed are items an overlay replaced, kept so listings can say
	// what a name would resolve to without the overlay.
	shadowed []Item
}

// Open indexes dir, then each overlay in order. An overlay's item replaces
// the item of the same kind and name below it, so content installed or
// edited locally wins over shipped content without hiding the rest of it.
// Files are named author/name after their path, as the hub names them;
// README and .md files are ignored. Overlays that do not exist add nothing.
func Open(dir string, overlays ...string) (*Hub, error) {
	h := &Hub{Dir: dir, items: map[string]map[string]Item{}}
	for _, d := range append([]string{dir}, overlays...) {
		if err := h.index(d); err != nil {
			return nil, err
		}
	}
	if len(h.items) == 0 {
		return nil, fmt.Errorf("index hub %s: no parsers, scenarios or collections", strings.Join(append([]string{dir}, overlays...), ", "))
	}
	return h, nil
}

func (h *Hub) index(dir string) error {
	for _, kind := range []string{Parsers, Postoverflows} {
		files, err := globYAML(filepath.Join(dir, kind, "*", "*"))
		if err != nil {
			return fmt.Errorf("index hub %s: %w", dir, err)
		}
		for _, f := range files {
			author := filepath.Base(filepath.Dir(f))
			stage := filepath.Base(filepath.Dir(filepath.Dir(f)))
			h.add(Item{Kind: kind, Stage: stage, Path: f, Layer: dir, Name: author + "/" + trimYAML(filepath.Base(f))})
		}
	}
	for _, kind := range []string{Scenarios, Collections, Contexts} {
		files, err := globYAML(filepath.Join(dir, kind, "*"))
		if err != nil {
			return fmt.Errorf("index hub %s: %w", dir, err)
		}
		for _, f := range files {
			author := filepath.Base(filepath.Dir(f))
			h.add(Item{Kind: kind, Path: f, Layer: dir, Name: author + "/" + trimYAML(filepath.Base(f))})
		}
	}
	return nil
}

// globYAML lists the YAML files in the directories pattern matches: the
// hub names its files .yaml, and a few contributors' .yml.
func globYAML(pattern string) ([]string, error) {
	var out []string
	for _, ext := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(pattern, ext))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

func trimYAML(base string) string {
	return strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
}

func (h *Hub) add(it Item) {
	m := h.items[it.Kind]
	if m == nil {
		m = map[string]Item{}
		h.items[it.Kind] = m
	}
	if old, ok := m[it.Name]; ok && old.Layer != it.Layer {
		h.shadowed = append(h.shadowed, old)
	}
	m[it.Name] = it
}

// Shadowed returns the items an overlay replaced, in the order replaced.
func (h *Hub) Shadowed() []Item { return append([]Item(nil), h.shadowed...) }

// Items returns every item of a kind, sorted by name.
func (h *Hub) Items(kind string) []Item {
	out := make([]Item, 0, len(h.items[kind]))
	for _, it := range h.items[kind] {
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ref resolves a reference as hub test configs write them: a name
// ("crowdsecurity/sshd-logs") or a path relative to the hub dir
// ("./parsers/s01-parse/crowdsecurity/nginx-logs.yaml").
func (h *Hub) Ref(kind, ref string) (Item, error) {
	if strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "/") {
		p := ref
		if _, err := os.Stat(p); err != nil || !filepath.IsAbs(p) {
			// Test configs write hub-relative paths, sometimes with a
			// leading slash.
			p = filepath.Join(h.Dir, ref)
		}
		for _, it := range h.items[kind] {
			if filepath.Clean(it.Path) == filepath.Clean(p) {
				return it, nil
			}
		}
		if _, err := os.Stat(p); err != nil {
			return Item{}, fmt.Errorf("%s %s: %w", kind, ref, ErrNotFound)
		}
		it := Item{Kind: kind, Path: p, Name: filepath.Base(filepath.Dir(p)) + "/" + trimYAML(filepath.Base(p))}
		if kind == Parsers || kind == Postoverflows {
			it.Stage = filepath.Base(filepath.Dir(filepath.Dir(p)))
		}
		return it, nil
	}
	it, ok := h.items[kind][ref]
	if !ok {
		return Item{}, fmt.Errorf("%s %s: %w", kind, ref, ErrNotFound)
	}
	return it, nil
}

// Selection is a resolved set of items, ready to load.
type Selection struct {
	Parsers       []parse.File
	Postoverflows []parse.File
	Scenarios     []string
	// Contexts are the alert context files of the selected collections
	// (every one of the hub's for an empty selection).
	Contexts []string
	// MissingContexts are contexts a collection names that the hub does
	// not hold. They are not an error: moat's hub installer left contexts
	// out before it loaded them, so a hub installed then names contexts it
	// never received, and it must keep loading.
	MissingContexts []string
	seen            map[string]bool
}

func (s *Selection) take(it Item) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if s.seen[it.Path] {
		return
	}
	s.seen[it.Path] = true
	switch it.Kind {
	case Parsers:
		s.Parsers = append(s.Parsers, parse.File{Path: it.Path, Stage: it.Stage})
	case Postoverflows:
		s.Postoverflows = append(s.Postoverflows, parse.File{Path: it.Path, Stage: it.Stage})
	case Scenarios:
		s.Scenarios = append(s.Scenarios, it.Path)
	case Contexts:
		s.Contexts = append(s.Contexts, it.Path)
	}
}

// Select resolves item names (collections, parsers, scenarios,
// postoverflows or contexts; "kind/author/name" disambiguates) into files,
// following collections recursively. No names selects every parser,
// scenario, postoverflow and context of the hub.
func (h *Hub) Select(names []string) (*Selection, error) {
	sel := &Selection{}
	if len(names) == 0 {
		for _, kind := range []string{Parsers, Postoverflows, Scenarios, Contexts} {
			for _, it := range h.Items(kind) {
				sel.take(it)
			}
		}
		return sel, nil
	}
	visiting := map[string]bool{}
	for _, n := range names {
		if err := h.selectName(sel, n, visiting); err != nil {
			return nil, err
		}
	}
	return sel, nil
}

func (h *Hub) selectName(sel *Selection, name string, visiting map[string]bool) error {
	kinds := []string{Collections, Parsers, Scenarios, Postoverflows, Contexts}
	for _, k := range kinds {
		if rest, ok := strings.CutPrefix(name, k+"/"); ok {
			kinds, name = []string{k}, rest
			break
		}
	}
	found := false
	for _, k := range kinds {
		it, ok := h.items[k][name]
		if !ok {
			continue
		}
		found = true
		if k == Collections {
			if err := h.selectCollection(sel, it, visiting); err != nil {
				return err
			}
			continue
		}
		sel.take(it)
	}
	if !found {
		return fmt.Errorf("select %s: %w", name, ErrNotFound)
	}
	return nil
}

// collection is a hub collection file.
type collection struct {
	Name          string         `yaml:"name"`
	Author        string         `yaml:"author"`
	Description   string         `yaml:"description"`
	Tags          []string       `yaml:"tags"`
	Labels        map[string]any `yaml:"labels"`
	Parsers       []string       `yaml:"parsers"`
	Scenarios     []string       `yaml:"scenarios"`
	Postoverflows []string       `yaml:"postoverflows"`
	Collections   []string       `yaml:"collections"`
	Contexts      []string       `yaml:"contexts"`
	AppsecConfigs []string       `yaml:"appsec-configs"`
	AppsecRules   []string       `yaml:"appsec-rules"`
}

func (h *Hub) selectCollection(sel *Selection, it Item, visiting map[string]bool) error {
	if visiting[it.Name] {
		return nil // collections may include each other; each is read once
	}
	visiting[it.Name] = true
	b, err := yamlerr.ReadFile(it.Path, yamlerr.MaxHubFile)
	if err != nil {
		return fmt.Errorf("load collection %s: %w", it.Name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c collection
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("load collection %s: %w", it.Name, yamlerr.Wrap(it.Path, err))
	}
	for _, p := range c.Parsers {
		if x, ok := h.items[Parsers][p]; ok {
			sel.take(x)
		} else {
			return fmt.Errorf("collection %s: parser %s: %w", it.Name, p, ErrNotFound)
		}
	}
	for _, p := range c.Scenarios {
		if x, ok := h.items[Scenarios][p]; ok {
			sel.take(x)
		} else {
			return fmt.Errorf("collection %s: scenario %s: %w", it.Name, p, ErrNotFound)
		}
	}
	for _, p := range c.Postoverflows {
		if x, ok := h.items[Postoverflows][p]; ok {
			sel.take(x)
		} else {
			return fmt.Errorf("collection %s: postoverflow %s: %w", it.Name, p, ErrNotFound)
		}
	}
	for _, p := range c.Contexts {
		if x, ok := h.items[Contexts][p]; ok {
			sel.take(x)
		} else if !slices.Contains(sel.MissingContexts, p) {
			sel.MissingContexts = append(sel.MissingContexts, p)
		}
	}
	for _, sub := range c.Collections {
		x, ok := h.items[Collections][sub]
		if !ok {
			return fmt.Errorf("collection %s: collection %s: %w", it.Name, sub, ErrNotFound)
		}
		if err := h.selectCollection(sel, x, visiting); err != nil {
			return err
		}
	}
	return nil
}
