package hubstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PatternDir is where the store keeps the grok pattern files of its
// source, below its directory (the hub loader never looks there).
const PatternDir = "patterns"

// Patterns returns the store's pattern directory, "" if it has none.
func (s *Store) Patterns() string {
	d := filepath.Join(s.Dir, PatternDir)
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// sourcePatterns lists the source's pattern files by name.
func sourcePatterns(src *Source) (map[string]string, error) {
	out := map[string]string{}
	if src.Patterns == "" {
		return out, nil
	}
	ents, err := os.ReadDir(src.Patterns)
	if err != nil {
		return nil, fmt.Errorf("hub source patterns: %w", err)
	}
	for _, e := range ents {
		// As the grok loader reads a directory: no subdirectories, no
		// dot files, no LICENSE.
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || e.Name() == "LICENSE" {
			continue
		}
		out[e.Name()] = filepath.Join(src.Patterns, e.Name())
	}
	return out, nil
}

// syncPatterns copies the source's pattern files the store lacks and, when
// upgrading, replaces those it holds unedited. Patterns are shared by
// every parser, so none is ever removed, and an edited one is kept like an
// edited item.
func (s *Store) syncPatterns(src *Source, upgrade bool) ([]Change, error) {
	files, err := sourcePatterns(src)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var changes []Change
	for _, n := range names {
		b, err := os.ReadFile(files[n])
		if err != nil {
			return changes, fmt.Errorf("hub source pattern %s: %w", n, err)
		}
		want := digest(b)
		dst := filepath.Join(s.Dir, PatternDir, n)
		cur, err := os.ReadFile(dst)
		ref := PatternDir + "/" + n
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return changes, err
		case digest(cur) == want:
			s.pats[n] = want
			continue
		case digest(cur) != s.pats[n]:
			if upgrade {
				changes = append(changes, Change{Ref: ref, Action: Tainted, Note: "edited locally; not overwritten"})
			}
			continue
		case !upgrade:
			continue
		}
		if err := writeAtomic(dst, b); err != nil {
			return changes, err
		}
		action := Installed
		if s.pats[n] != "" {
			action = Upgraded
		}
		s.pats[n] = want
		changes = append(changes, Change{Ref: ref, Action: action})
	}
	return changes, nil
}
