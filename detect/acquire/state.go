package acquire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// StateOf is the name a source of cfg runs under (its own, or the one
// derived from its inputs) and the file under stateDir where it keeps its
// position; "" for kinds that keep none (syslog, command). moat support
// dump reads it to report each source's saved position.
func StateOf(cfg Config, stateDir string) (name, path string) {
	name = cfg.Name
	if name == "" {
		name = defaultName(&cfg)
	}
	switch cfg.Source {
	case KindFile:
		path = stateFile(stateDir, "file", name)
	case KindJournal:
		path = stateFile(stateDir, "journal", name)
	case KindDocker:
		path = stateFile(stateDir, "docker", name)
	}
	return name, path
}

// stateFile names the file holding a source's position: the kind plus a
// hash of the source name, so renaming a glob does not reuse stale offsets.
func stateFile(dir, kind, name string) string {
	if dir == "" {
		return ""
	}
	h := sha256.Sum256([]byte(name))
	return filepath.Join(dir, kind+"-"+hex.EncodeToString(h[:8])+".json")
}

// loadState reads v from path; found is false when there is no saved state.
func loadState(path string, v any) (found bool, err error) {
	if path == "" {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode state %s: %w", path, err)
	}
	return true, nil
}

// saveState writes v atomically: a crash leaves either the old or the new
// file, never a torn one.
func saveState(path string, v any) error {
	if path == "" {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save state %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync state dir: %w", err)
		}
	}
	return nil
}
