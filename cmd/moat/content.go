package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/packaging"
)

// sharedDir is where the Debian package installs the shipped content.
const sharedDir = "/usr/share/moat"

// content is where the hub files, grok patterns and acquisition files come
// from once the fallbacks are resolved.
type content struct {
	hubDir, patternDir, acquisDir string
	hubOverlays                   []string // see hubLayers
	// geo answers the engine's GeoIP enrichers, nil without geoip:
	// (openContent, daemon.openGeo).
	geo     *geoip.DB
	cleanup func()
}

// resolveContent picks, for each kind of content, the configured directory,
// else the packaged one under /usr/share/moat, else the copy built into the
// binary (extracted to a private temporary directory). Only a directory
// left at its default falls back: one the configuration names elsewhere
// must exist (config.CheckPaths), or a typo would load other content.
func resolveContent(cfg config.Config) (content, error) {
	if err := cfg.CheckPaths(); err != nil {
		return content{}, err
	}
	c := content{cleanup: func() {}}
	var embedded string
	fromEmbed := func(sub string) (string, error) {
		if embedded == "" {
			dir, err := os.MkdirTemp("", "moat-content-")
			if err != nil {
				return "", fmt.Errorf("extract built-in content: %w", err)
			}
			if err := os.CopyFS(dir, packaging.Files); err != nil {
				os.RemoveAll(dir)
				return "", fmt.Errorf("extract built-in content: %w", err)
			}
			embedded = dir
			c.cleanup = func() { os.RemoveAll(dir) }
		}
		return filepath.Join(embedded, sub), nil
	}
	pick := func(configured, sub string) (string, error) {
		for _, dir := range []string{configured, filepath.Join(sharedDir, sub)} {
			if dir == "" {
				continue
			}
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				return dir, nil
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("content directory %s: %w", dir, err)
			}
		}
		return fromEmbed(sub)
	}
	var err error
	if c.hubDir, c.hubOverlays, err = layerHub(cfg, pick); err != nil {
		c.cleanup()
		return content{}, err
	}
	if c.patternDir, err = pick(cfg.Hub.Patterns, "patterns"); err != nil {
		c.cleanup()
		return content{}, err
	}
	if err = layerPatterns(cfg, &c); err != nil {
		c.cleanup()
		return content{}, err
	}
	if c.acquisDir, err = pick(cfg.Acquisition.Dir, "acquis.d"); err != nil {
		c.cleanup()
		return content{}, err
	}
	return c, nil
}
