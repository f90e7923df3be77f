package hubstore

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Bundles are trusted no more than a download: bounded in size, and no
// entry may land outside the directory or be a link.
const (
	maxBundleFile  = 64 << 20
	maxBundleTotal = 1 << 30
)

// extractBundle unpacks a tar.gz of a hub directory into dir. Only
// directories and regular files are taken; links and devices are skipped.
func extractBundle(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a tar.gz bundle: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read bundle: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("bundle entry %q leaves the bundle", h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size > maxBundleFile {
				return fmt.Errorf("bundle entry %q: %d bytes, more than %d", h.Name, h.Size, maxBundleFile)
			}
			if total += h.Size; total > maxBundleTotal {
				return fmt.Errorf("bundle: more than %d bytes unpacked", maxBundleTotal)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, io.LimitReader(tr, h.Size))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("bundle entry %q: %w", h.Name, err)
			}
		}
	}
}
