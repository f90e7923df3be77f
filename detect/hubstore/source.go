// Package hubstore installs, upgrades and removes CrowdSec hub items from
// a local hub source (a directory such as Debian's crowdsec snapshot or a
// git checkout of the hub, or a tar.gz bundle of one) into moat's own hub
// layer, and keeps a state file of what it installed, at which version and
// with which sha256, so local edits are seen and never overwritten. It
// never touches the network.
package hubstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/internal/yamlerr"
)

// Kinds moat loads, in the order a listing shows them.
var Kinds = []string{hub.Collections, hub.Parsers, hub.Postoverflows, hub.Scenarios, hub.Contexts}

// ErrNotFound is wrapped by errors for names the source or the store lacks.
var ErrNotFound = errors.New("hub item not found")

// Item is one item a source offers.
type Item struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Stage string `json:"stage,omitempty"`
	// Path is relative to the source root, in the hub layout.
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
	// SHA256 is the digest of the file the source holds now.
	SHA256 string `json:"sha256"`
	// Deps are the items a collection pulls in, as "kind/author/name".
	Deps []string `json:"deps,omitempty"`
	// Data are the dest_file names of the item's data: entries.
	Data []string `json:"data,omitempty"`
}

// Ref is the item's "kind/author/name".
func (it Item) Ref() string { return it.Kind + "/" + it.Name }

// Source is an opened hub source.
type Source struct {
	// Origin is what the source was opened from (a directory or a bundle).
	Origin string
	// Root is the hub directory (the one holding parsers/, scenarios/...).
	Root string
	// Data is where data files are looked up; "" if the source has none.
	Data string
	// Patterns holds the grok pattern files the source's parsers build
	// on; "" if the source has none.
	Patterns string
	// Indexed says whether the items came from .index.json or a scan.
	Indexed bool

	items   map[string]map[string]Item
	cleanup func()
}

// SourceOptions overrides where a source's data and pattern files live.
type SourceOptions struct {
	DataDir, PatternDir string
	// TempDir is where a bundle is unpacked ("" for the system default).
	TempDir string
}

// Where Debian's crowdsec package puts its hub snapshot and the grok
// patterns its parsers need.
const (
	debianHub      = "/usr/share/crowdsec/hub"
	debianPatterns = "/etc/crowdsec/patterns"
)

// OpenSource opens a hub source: a directory in the hub layout (or one
// holding such a directory as hub/), or a .tar.gz/.tgz bundle of one.
// Close removes what opening a bundle unpacked.
func OpenSource(path string, opts SourceOptions) (*Source, error) {
	s := &Source{Origin: path, cleanup: func() {}}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("hub source: %w", err)
	}
	dir := path
	if !st.IsDir() {
		tmp, err := os.MkdirTemp(opts.TempDir, "moat-hub-bundle-")
		if err != nil {
			return nil, fmt.Errorf("hub source %s: %w", path, err)
		}
		s.cleanup = func() { os.RemoveAll(tmp) }
		if err := extractBundle(path, tmp); err != nil {
			s.cleanup()
			return nil, fmt.Errorf("hub source %s: %w", path, err)
		}
		dir = tmp
	}
	if s.Root, err = findRoot(dir); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("hub source %s: %w", path, err)
	}
	s.Data = opts.DataDir
	if s.Data == "" {
		for _, d := range []string{filepath.Join(s.Root, "data"), filepath.Join(s.Root, "..", "data")} {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				s.Data = filepath.Clean(d)
				break
			}
		}
	}
	s.Patterns = opts.PatternDir
	if s.Patterns == "" {
		cands := []string{filepath.Join(s.Root, "patterns"), filepath.Join(s.Root, "..", "patterns")}
		if s.Root == debianHub {
			// Debian's crowdsec package keeps them with its configuration.
			cands = append(cands, debianPatterns)
		}
		for _, d := range cands {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				s.Patterns = filepath.Clean(d)
				break
			}
		}
	}
	if err := s.index(); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("hub source %s: %w", path, err)
	}
	return s, nil
}

// Close releases an unpacked bundle.
func (s *Source) Close() error {
	s.cleanup()
	return nil
}

// findRoot finds the hub directory in dir: dir itself, dir/hub, or the
// same below dir's only subdirectory (how a bundle of a checkout unpacks).
func findRoot(dir string) (string, error) {
	cands := []string{dir, filepath.Join(dir, "hub")}
	if ents, err := os.ReadDir(dir); err == nil {
		var subs []string
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				subs = append(subs, e.Name())
			}
		}
		if len(subs) == 1 {
			cands = append(cands, filepath.Join(dir, subs[0]), filepath.Join(dir, subs[0], "hub"))
		}
	}
	for _, c := range cands {
		if isHubRoot(c) {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("no hub layout (.index.json, parsers/, scenarios/ or collections/) in %s", dir)
}

func isHubRoot(dir string) bool {
	for _, n := range []string{".index.json", hub.Parsers, hub.Scenarios, hub.Collections} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// indexEntry is one item of the hub's .index.json (kind -> name -> entry).
type indexEntry struct {
	Path     string `json:"path"`
	Stage    string `json:"stage"`
	Version  string `json:"version"`
	Versions map[string]struct {
		Digest     string `json:"digest"`
		Deprecated bool   `json:"deprecated"`
	} `json:"versions"`
	Parsers       []string `json:"parsers"`
	Scenarios     []string `json:"scenarios"`
	Postoverflows []string `json:"postoverflows"`
	Collections   []string `json:"collections"`
	Contexts      []string `json:"contexts"`
}

func (s *Source) index() error {
	s.items = map[string]map[string]Item{}
	b, err := os.ReadFile(filepath.Join(s.Root, ".index.json"))
	switch {
	case err == nil:
		s.Indexed = true
		return s.fromIndex(b)
	case errors.Is(err, fs.ErrNotExist):
		return s.scan()
	default:
		return err
	}
}

func (s *Source) fromIndex(b []byte) error {
	var idx map[string]map[string]indexEntry
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(s.Root, ".index.json"), err)
	}
	for _, kind := range Kinds {
		for name, e := range idx[kind] {
			p := filepath.Clean(filepath.FromSlash(e.Path))
			if !filepath.IsLocal(p) {
				return fmt.Errorf(".index.json: %s %s: path %q leaves the hub", kind, name, e.Path)
			}
			it := Item{Kind: kind, Name: name, Stage: e.Stage, Path: p, Version: e.Version}
			for _, d := range [][]string{
				prefixed(hub.Parsers, e.Parsers), prefixed(hub.Scenarios, e.Scenarios),
				prefixed(hub.Postoverflows, e.Postoverflows), prefixed(hub.Collections, e.Collections),
				prefixed(hub.Contexts, e.Contexts),
			} {
				it.Deps = append(it.Deps, d...)
			}
			if err := s.describe(&it); err != nil {
				// The index may name files a partial snapshot lacks.
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return err
			}
			s.add(it)
		}
	}
	return nil
}

func prefixed(kind string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = kind + "/" + n
	}
	return out
}

// scan lists a checkout without an index the way moat's loader does.
func (s *Source) scan() error {
	h, err := hub.Open(s.Root)
	if err != nil {
		return err
	}
	for _, kind := range Kinds {
		for _, hi := range h.Items(kind) {
			rel, err := filepath.Rel(s.Root, hi.Path)
			if err != nil {
				return err
			}
			it := Item{Kind: kind, Name: hi.Name, Stage: hi.Stage, Path: rel}
			if kind == hub.Collections {
				if it.Deps, err = collectionDeps(hi.Path); err != nil {
					return err
				}
			}
			if err := s.describe(&it); err != nil {
				return err
			}
			s.add(it)
		}
	}
	return nil
}

// collectionDeps reads the items a collection file names.
func collectionDeps(path string) ([]string, error) {
	b, err := yamlerr.ReadFile(path, yamlerr.MaxHubFile)
	if err != nil {
		return nil, err
	}
	var c struct {
		Parsers       []string `yaml:"parsers"`
		Scenarios     []string `yaml:"scenarios"`
		Postoverflows []string `yaml:"postoverflows"`
		Collections   []string `yaml:"collections"`
		Contexts      []string `yaml:"contexts"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("collection: %w", yamlerr.Wrap(path, err))
	}
	var deps []string
	deps = append(deps, prefixed(hub.Parsers, c.Parsers)...)
	deps = append(deps, prefixed(hub.Scenarios, c.Scenarios)...)
	deps = append(deps, prefixed(hub.Postoverflows, c.Postoverflows)...)
	deps = append(deps, prefixed(hub.Collections, c.Collections)...)
	deps = append(deps, prefixed(hub.Contexts, c.Contexts)...)
	return deps, nil
}

// describe fills the digest and data files from the file itself: the
// file is what gets installed, whatever the index says.
func (s *Source) describe(it *Item) error {
	b, err := yamlerr.ReadFile(filepath.Join(s.Root, it.Path), yamlerr.MaxHubFile)
	if err != nil {
		return err
	}
	it.SHA256 = digest(b)
	it.Data, err = dataFiles(filepath.Join(s.Root, it.Path), b)
	return err
}

// dataFiles lists the dest_file of every data: entry of every document.
func dataFiles(path string, b []byte) ([]string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []string
	for {
		var doc struct {
			Data []struct {
				DestFile string `yaml:"dest_file"`
			} `yaml:"data"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data entries: %w", yamlerr.Wrap(path, err))
		}
		for _, d := range doc.Data {
			if d.DestFile != "" {
				out = append(out, filepath.Base(d.DestFile))
			}
		}
	}
	return out, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Source) add(it Item) {
	m := s.items[it.Kind]
	if m == nil {
		m = map[string]Item{}
		s.items[it.Kind] = m
	}
	m[it.Name] = it
}

// Items returns every item, by kind in Kinds order, then by name.
func (s *Source) Items() []Item {
	var out []Item
	for _, kind := range Kinds {
		start := len(out)
		for _, it := range s.items[kind] {
			out = append(out, it)
		}
		sort.Slice(out[start:], func(i, j int) bool { return out[start+i].Name < out[start+j].Name })
	}
	return out
}

// Lookup resolves "author/name" (any kind, collections first) or
// "kind/author/name".
func (s *Source) Lookup(ref string) (Item, error) {
	return lookup(ref, func(kind, name string) (Item, bool) {
		it, ok := s.items[kind][name]
		return it, ok
	})
}

func lookup[T any](ref string, get func(kind, name string) (T, bool)) (T, error) {
	kinds := Kinds
	name := ref
	for _, k := range Kinds {
		if rest, ok := strings.CutPrefix(ref, k+"/"); ok && strings.Contains(rest, "/") {
			kinds, name = []string{k}, rest
			break
		}
	}
	var found []T
	var foundKinds []string
	for _, k := range kinds {
		if it, ok := get(k, name); ok {
			found = append(found, it)
			foundKinds = append(foundKinds, k)
		}
	}
	var zero T
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%s: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return zero, fmt.Errorf("%s is ambiguous (%s): name it as KIND/%s", ref, strings.Join(foundKinds, ", "), name)
	}
}

// findData returns the path of a data file in the source, searched by
// base name below the data directory as the engine searches its own.
func (s *Source) findData(name string) (string, bool) {
	if s.Data == "" {
		return "", false
	}
	var found string
	_ = filepath.WalkDir(s.Data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && d.Name() == name {
			found = p
			return fs.SkipAll
		}
		return nil
	})
	return found, found != ""
}
