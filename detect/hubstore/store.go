package hubstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moatsec/moat/detect/hub"
)

// StateFile is the store's record of what it installed, in its directory.
const StateFile = ".moat-hub-state.json"

// Record is one installed item.
type Record struct {
	Item
	// Source is where the item was installed or last upgraded from.
	Source      string    `json:"source"`
	InstalledAt time.Time `json:"installed_at"`
	// Explicit items were named on the command line; the others came in
	// as dependencies and go when nothing installed needs them any more.
	Explicit bool `json:"explicit"`
}

type state struct {
	Items []Record `json:"items"`
	// Patterns are the digests of the pattern files as copied, by name.
	Patterns map[string]string `json:"patterns,omitempty"`
}

// Store is moat's installed hub layer: a directory in the hub layout that
// only the store writes, plus its state file. Data files go to DataDir,
// where the engine reads them.
type Store struct {
	Dir     string
	DataDir string
	recs    map[string]*Record // by Ref
	pats    map[string]string
}

// Open reads the store's state; a store never written is empty.
func Open(dir, dataDir string) (*Store, error) {
	s := &Store{Dir: dir, DataDir: dataDir, recs: map[string]*Record{}, pats: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hub store: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("hub store %s: %w", filepath.Join(dir, StateFile), err)
	}
	for i := range st.Items {
		r := st.Items[i]
		if !filepath.IsLocal(r.Path) {
			return nil, fmt.Errorf("hub store %s: %s: path %q leaves the store", filepath.Join(dir, StateFile), r.Ref(), r.Path)
		}
		s.recs[r.Ref()] = &r
	}
	for n, d := range st.Patterns {
		s.pats[n] = d
	}
	return s, nil
}

// Exists says whether anything was ever installed here.
func (s *Store) Exists() bool {
	_, err := os.Stat(filepath.Join(s.Dir, StateFile))
	return err == nil
}

func (s *Store) save() error {
	st := state{Items: s.Records(), Patterns: s.pats}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.Dir, StateFile), append(b, '\n'))
}

// Records returns the installed items in listing order.
func (s *Store) Records() []Record {
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		ki, kj := slices.Index(Kinds, out[i].Kind), slices.Index(Kinds, out[j].Kind)
		if ki != kj {
			return ki < kj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Lookup finds an installed item by "author/name" or "kind/author/name".
func (s *Store) Lookup(ref string) (Record, error) {
	return lookup(ref, func(kind, name string) (Record, bool) {
		r, ok := s.recs[kind+"/"+name]
		if !ok {
			return Record{}, false
		}
		return *r, true
	})
}

// State of an installed file compared with its record.
const (
	StateOK      = "ok"
	StateTainted = "tainted" // edited since installed: upgrades leave it alone
	StateMissing = "missing" // deleted from the store's directory
)

// FileState compares the installed file with the digest recorded for it.
func (s *Store) FileState(r Record) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, r.Path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return StateMissing, nil
	case err != nil:
		return "", err
	case digest(b) != r.SHA256:
		return StateTainted, nil
	}
	return StateOK, nil
}

// Change is one thing an install, upgrade or remove did or left alone.
type Change struct {
	Ref    string `json:"item"`
	Action string `json:"action"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Actions a Change reports.
const (
	Installed  = "installed"
	Kept       = "kept"       // already installed
	Upgraded   = "upgraded"   // replaced by the source's version
	UpToDate   = "up-to-date" // the source has nothing newer
	Tainted    = "tainted"    // edited locally: not overwritten
	Removed    = "removed"
	DataCopied = "data"
	NotInSrc   = "not-in-source"
)

// InstallOptions tune Install.
type InstallOptions struct {
	// AllowMissingData installs items whose data files the source lacks;
	// the engine then refuses to load them until the files are placed.
	AllowMissingData bool
}

// resolve returns ref and everything it pulls in, dependencies first.
func resolve(src *Source, refs []string) ([]Item, error) {
	var out []Item
	seen := map[string]bool{}
	var visit func(ref, from string) error
	visit = func(ref, from string) error {
		it, err := src.Lookup(ref)
		if err != nil {
			if from != "" {
				return fmt.Errorf("%s needs %w", from, err)
			}
			return err
		}
		if seen[it.Ref()] {
			return nil // collections may include each other
		}
		seen[it.Ref()] = true
		for _, d := range it.Deps {
			kind := strings.SplitN(d, "/", 2)[0]
			if !slices.Contains(Kinds, kind) {
				continue // kinds moat does not load (appsec)
			}
			if err := visit(d, it.Ref()); err != nil {
				if kind == hub.Contexts && errors.Is(err, ErrNotFound) {
					// An alert context only adds to alerts; a source
					// without it (an older snapshot) still installs
					// the detection, as the engine loads without it.
					continue
				}
				return err
			}
		}
		out = append(out, it)
		return nil
	}
	for _, r := range refs {
		if err := visit(r, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Install copies the named items and their dependencies from src, with
// the data files they name. Nothing is written unless every item and data
// file resolves. Installed items are kept as they are: upgrading them is
// Upgrade's job.
func (s *Store) Install(src *Source, refs []string, opts InstallOptions) ([]Change, error) {
	items, err := resolve(src, refs)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, r := range refs {
		it, _ := src.Lookup(r)
		named[it.Ref()] = true
	}
	var todo []Item
	var changes []Change
	for _, it := range items {
		if r, ok := s.recs[it.Ref()]; ok {
			if named[it.Ref()] && !r.Explicit {
				r.Explicit = true
			}
			changes = append(changes, Change{Ref: it.Ref(), Action: Kept, From: r.Version})
			continue
		}
		todo = append(todo, it)
	}
	data, err := s.planData(src, todo, opts.AllowMissingData)
	if err != nil {
		return nil, err
	}
	for _, it := range todo {
		if err := s.put(src, it, named[it.Ref()]); err != nil {
			return changes, err
		}
		changes = append(changes, Change{Ref: it.Ref(), Action: Installed, To: it.Version})
	}
	c, err := s.syncPatterns(src, false)
	changes = append(changes, c...)
	if err != nil {
		return changes, err
	}
	c, err = s.copyData(data)
	changes = append(changes, c...)
	if err != nil {
		return changes, err
	}
	return changes, s.save()
}

// planData maps every data file the items need and DataDir lacks to its
// place in the source.
func (s *Store) planData(src *Source, items []Item, allowMissing bool) (map[string]string, error) {
	plan := map[string]string{}
	var missing []string
	for _, it := range items {
		for _, name := range it.Data {
			if _, ok := plan[name]; ok {
				continue
			}
			if _, err := os.Stat(filepath.Join(s.DataDir, name)); err == nil {
				continue
			}
			p, ok := src.findData(name)
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (for %s)", name, it.Ref()))
				continue
			}
			plan[name] = p
		}
	}
	if len(missing) > 0 && !allowMissing {
		where := "the source has no data directory"
		if src.Data != "" {
			where = "not under " + src.Data
		}
		return nil, fmt.Errorf("data files missing (%s; moat does not download them): %s; place them in %s or name a data directory", where, strings.Join(missing, ", "), s.DataDir)
	}
	return plan, nil
}

func (s *Store) copyData(plan map[string]string) ([]Change, error) {
	names := make([]string, 0, len(plan))
	for n := range plan {
		names = append(names, n)
	}
	sort.Strings(names)
	var changes []Change
	for _, n := range names {
		b, err := os.ReadFile(plan[n])
		if err != nil {
			return changes, fmt.Errorf("data file %s: %w", n, err)
		}
		if err := writeAtomic(filepath.Join(s.DataDir, n), b); err != nil {
			return changes, err
		}
		changes = append(changes, Change{Ref: n, Action: DataCopied, From: plan[n]})
	}
	return changes, nil
}

// put copies one item's file from src and records it.
func (s *Store) put(src *Source, it Item, explicit bool) error {
	b, err := os.ReadFile(filepath.Join(src.Root, it.Path))
	if err != nil {
		return fmt.Errorf("install %s: %w", it.Ref(), err)
	}
	// What is recorded is what was written, not what an index claims.
	it.SHA256 = digest(b)
	if err := writeAtomic(filepath.Join(s.Dir, it.Path), b); err != nil {
		return fmt.Errorf("install %s: %w", it.Ref(), err)
	}
	if old, ok := s.recs[it.Ref()]; ok {
		explicit = explicit || old.Explicit
		if old.Path != it.Path {
			// The source moved it (a parser changing stage): one copy only.
			os.Remove(filepath.Join(s.Dir, old.Path))
		}
	}
	s.recs[it.Ref()] = &Record{Item: it, Source: src.Origin, InstalledAt: time.Now().UTC(), Explicit: explicit}
	return nil
}

// Upgrade replaces installed items (all, or the named ones) whose source
// version differs, and installs what upgraded collections now pull in.
// Tainted items are reported and left as they are.
func (s *Store) Upgrade(src *Source, refs []string, opts InstallOptions) ([]Change, error) {
	var recs []Record
	if len(refs) == 0 {
		recs = s.Records()
	} else {
		for _, ref := range refs {
			r, err := s.Lookup(ref)
			if err != nil {
				return nil, fmt.Errorf("upgrade: %w", err)
			}
			recs = append(recs, r)
		}
	}
	var changes []Change
	var todo []Item
	var newDeps []string
	for _, r := range recs {
		it, err := src.Lookup(r.Ref())
		if err != nil {
			changes = append(changes, Change{Ref: r.Ref(), Action: NotInSrc, From: r.Version})
			continue
		}
		st, err := s.FileState(r)
		if err != nil {
			return nil, err
		}
		switch {
		case st == StateTainted:
			changes = append(changes, Change{Ref: r.Ref(), Action: Tainted, From: r.Version, To: it.Version, Note: "edited locally; not overwritten"})
			continue
		case st == StateOK && it.SHA256 == r.SHA256:
			changes = append(changes, Change{Ref: r.Ref(), Action: UpToDate, From: r.Version})
			continue
		}
		todo = append(todo, it)
		note := ""
		if st == StateMissing {
			note = "was missing"
		}
		changes = append(changes, Change{Ref: r.Ref(), Action: Upgraded, From: r.Version, To: it.Version, Note: note})
		for _, d := range it.Deps {
			if _, ok := s.recs[d]; !ok {
				newDeps = append(newDeps, d)
			}
		}
	}
	data, err := s.planData(src, todo, opts.AllowMissingData)
	if err != nil {
		return nil, err
	}
	for _, it := range todo {
		if err := s.put(src, it, false); err != nil {
			return changes, err
		}
	}
	c, err := s.syncPatterns(src, true)
	changes = append(changes, c...)
	if err != nil {
		return changes, err
	}
	c, err = s.copyData(data)
	changes = append(changes, c...)
	if err != nil {
		return changes, err
	}
	if err := s.save(); err != nil {
		return changes, err
	}
	if len(newDeps) > 0 {
		c, err := s.Install(src, newDeps, opts)
		for _, ch := range c {
			if ch.Action != Kept {
				changes = append(changes, ch)
			}
		}
		if err != nil {
			return changes, err
		}
		// They came as dependencies, not by name.
		for _, d := range newDeps {
			if r, ok := s.recs[d]; ok {
				r.Explicit = false
			}
		}
		return changes, s.save()
	}
	return changes, nil
}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// Force removes tainted items too (their edits are lost).
	Force bool
}

// Remove removes the named items, then every dependency nothing installed
// by name still needs. Data files stay: other content may read them.
func (s *Store) Remove(refs []string, opts RemoveOptions) ([]Change, error) {
	gone := map[string]bool{}
	for _, ref := range refs {
		r, err := s.Lookup(ref)
		if err != nil {
			return nil, fmt.Errorf("remove: %w", err)
		}
		gone[r.Ref()] = true
	}
	// Keep everything reachable from an explicit item that stays.
	needed := map[string]bool{}
	var mark func(ref string)
	mark = func(ref string) {
		r, ok := s.recs[ref]
		if !ok || needed[ref] {
			return
		}
		needed[ref] = true
		for _, d := range r.Deps {
			mark(d)
		}
	}
	for ref, r := range s.recs {
		if r.Explicit && !gone[ref] {
			mark(ref)
		}
	}
	var drop []Record
	for _, r := range s.Records() {
		if gone[r.Ref()] || !needed[r.Ref()] {
			drop = append(drop, r)
		}
	}
	for _, r := range drop {
		st, err := s.FileState(r)
		if err != nil {
			return nil, err
		}
		if st == StateTainted && !opts.Force {
			return nil, fmt.Errorf("remove: %s is tainted (edited since installed); force to remove it and lose the edits", r.Ref())
		}
	}
	var changes []Change
	for _, r := range drop {
		if err := os.Remove(filepath.Join(s.Dir, r.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return changes, fmt.Errorf("remove %s: %w", r.Ref(), err)
		}
		delete(s.recs, r.Ref())
		note := ""
		if !gone[r.Ref()] {
			note = "no longer needed"
		}
		changes = append(changes, Change{Ref: r.Ref(), Action: Removed, From: r.Version, Note: note})
	}
	return changes, s.save()
}

// writeAtomic replaces path with b, so a reader (the daemon reloading)
// never sees half a file.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".moat-tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Snapshot sets the store's directory aside, so a change the engine then
// refuses can be undone: restore puts the directory back as it was,
// discard drops the copy. Data files are not part of it; a change only
// ever adds them.
func (s *Store) Snapshot() (restore func() error, discard func(), err error) {
	bak := s.Dir + ".undo"
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return func() error { return os.RemoveAll(s.Dir) }, func() {}, nil
	}
	if err := os.RemoveAll(bak); err != nil {
		return nil, nil, fmt.Errorf("hub store snapshot: %w", err)
	}
	if err := os.CopyFS(bak, os.DirFS(s.Dir)); err != nil {
		os.RemoveAll(bak)
		return nil, nil, fmt.Errorf("hub store snapshot: %w", err)
	}
	restore = func() error {
		if err := os.RemoveAll(s.Dir); err != nil {
			return err
		}
		return os.Rename(bak, s.Dir)
	}
	return restore, func() { os.RemoveAll(bak) }, nil
}
