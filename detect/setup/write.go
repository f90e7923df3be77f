package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect/acquire"
)

// header opens setup's file: it is rewritten whole, so an edit made here
// would be lost on the next run.
const header = `# Written by moat setup from the services it found on this host; every
# run rewrites this file. Entries of your own go in another file of this
# directory: setup reads them and never adds a second reader of a log
# they read.
`

// document is one entry as the acquisition loader reads it.
type document struct {
	Name             string            `yaml:"name"`
	Source           string            `yaml:"source"`
	Filenames        []string          `yaml:"filenames,omitempty"`
	JournalctlFilter []string          `yaml:"journalctl_filter,omitempty"`
	Labels           map[string]string `yaml:"labels"`
}

// Render returns the plan's acquisition entries as an acquisition file,
// one document each, the services and evidence as a comment above it.
func Render(p Plan) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(header)
	for _, e := range p.Acquisition {
		b.WriteString("---\n")
		fmt.Fprintf(&b, "# %s: %s\n", comment(strings.Join(e.Services, ", ")), comment(strings.Join(e.Evidence, ", ")))
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		err := enc.Encode(document{
			Name: e.Name, Source: e.Source, Filenames: e.Filenames, JournalctlFilter: e.JournalFilter,
			Labels: map[string]string{"type": e.Type},
		})
		if err == nil {
			err = enc.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("render acquisition entry %s: %w", e.Name, err)
		}
	}
	return b.Bytes(), nil
}

// comment makes s safe on one comment line: evidence names files found on
// the host, and a newline in a file name must not start a YAML key.
func comment(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.QuoteToASCII(s)
	}
	return s
}

// Write puts the plan's acquisition into dir as OwnFile, atomically, and
// returns the paths it wrote. A missing dir is created whole with the
// fallback's files (ex.Carry) beside setup's, since the daemon stops
// reading the fallback once the directory exists. Nothing is written when
// there is nothing to add and no earlier file of setup's to replace. The
// result is loaded back as the daemon would load it; when that fails the
// earlier file is put back and the error returned.
func Write(dir string, p Plan, ex Existing) ([]string, error) {
	data, err := Render(p)
	if err != nil {
		return nil, err
	}
	own := filepath.Join(dir, OwnFile)
	if _, err := acquire.LoadConfig(own, data); err != nil {
		return nil, fmt.Errorf("setup's acquisition does not load: %w", err)
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if len(p.Acquisition) == 0 {
			return nil, nil
		}
		return createDir(dir, data, ex.Carry)
	case err != nil:
		return nil, fmt.Errorf("acquisition dir: %w", err)
	case !st.IsDir():
		return nil, fmt.Errorf("acquisition dir %s: not a directory", dir)
	}
	prev, err := os.ReadFile(own)
	switch {
	case errors.Is(err, fs.ErrNotExist) && len(p.Acquisition) == 0:
		return nil, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read %s: %w", own, err)
	}
	if err := writeAtomic(own, data); err != nil {
		return nil, err
	}
	if _, err := acquire.LoadConfigDir(dir); err != nil {
		undo := os.Remove(own)
		if prev != nil {
			undo = writeAtomic(own, prev)
		}
		if undo != nil {
			return nil, fmt.Errorf("%w; and putting %s back failed: %v", err, own, undo)
		}
		return nil, fmt.Errorf("%s not written, the directory would not load: %w", own, err)
	}
	return []string{own}, nil
}

// createDir builds the directory beside its place and renames it there,
// so the daemon never sees it half written.
func createDir(dir string, own []byte, carry map[string][]byte) ([]string, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("acquisition dir: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".setup-")
	if err != nil {
		return nil, fmt.Errorf("acquisition dir: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename; a leftover on failure
	files := map[string][]byte{OwnFile: own}
	for n, b := range carry {
		files[n] = b
	}
	var written []string
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, n), b, 0o644); err != nil {
			return nil, fmt.Errorf("acquisition dir: %w", err)
		}
		written = append(written, filepath.Join(dir, n))
	}
	if _, err := acquire.LoadConfigDir(tmp); err != nil {
		return nil, fmt.Errorf("%s not created, it would not load: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("acquisition dir: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("acquisition dir: %w", err)
	}
	sort.Strings(written)
	return written, nil
}

// writeAtomic replaces path with b through a dot-named temporary file,
// which the acquisition loader skips, so a reload never reads half a file.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
