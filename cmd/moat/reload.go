package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/internal/config"
)

// engineRef is the engine detection runs now; a reload may swap it.
type engineRef struct{ p atomic.Pointer[engine.Engine] }

func (r *engineRef) Stats() engine.Stats { return r.p.Load().Stats() }

// reloadCounts feeds moat_config_reloads_total.
type reloadCounts struct {
	success, failure atomic.Uint64
	desc             *prometheus.Desc
}

func newReloadCounts() *reloadCounts {
	return &reloadCounts{desc: prometheus.NewDesc("moat_config_reloads_total",
		"Configuration reloads (SIGHUP, systemctl reload moat) by result; a failed one leaves the running configuration in place.",
		[]string{"result"}, nil)}
}

func (r *reloadCounts) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *reloadCounts) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(r.success.Load()), "success")
	ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, float64(r.failure.Load()), "failure")
}

// reloadLoop reloads on every SIGHUP until ctx ends. A reload that fails
// changes nothing: detection and bans go on with what ran before.
func (d *daemon) reloadLoop(ctx context.Context, hup <-chan os.Signal) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		}
		sddaemon.SdNotify(false, sddaemon.SdNotifyReloading)
		applied, err := d.reload(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			d.reloads.success.Add(1)
		default:
			d.reloads.failure.Add(1)
			msg, _, _ := strings.Cut(err.Error(), "\n")
			if applied {
				d.log.Error("configuration reloaded, but a source could not start", "err", msg)
			} else {
				d.log.Error("configuration reload refused; moat keeps running with the previous configuration", "err", msg)
			}
		}
		sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	}
}

// reload loads and checks everything first, then applies it: the log
// level, the detection content (a new engine only when it changed) and the
// acquisition sources. Settings bound to sockets, the state directory or
// the kernel keep their running values. applied reports whether anything
// changed: a refused reload changes nothing.
func (d *daemon) reload(ctx context.Context) (applied bool, err error) {
	cfg, err := d.loadConfig()
	if err != nil {
		return false, err
	}
	frozen := keepFrozen(d.cfg, &cfg)
	c, err := resolveContent(cfg)
	if err != nil {
		return false, err
	}
	c.geo = d.geo
	inUse := false
	defer func() {
		if !inUse {
			c.cleanup()
		}
	}()
	fp, err := fingerprint(cfg, c)
	if err != nil {
		return false, err
	}
	var eng *engine.Engine
	if fp != d.fingerprint {
		if eng, err = loadEngine(cfg, c, false, 0); err != nil {
			return false, err
		}
		logScenarioWarnings(d.log, eng)
	}
	acqs, err := loadAcquisition(c.acquisDir, d.log)
	if err != nil {
		return false, err
	}
	for _, ac := range acqs {
		if err := ac.Validate(); err != nil {
			return false, contentError{err}
		}
	}
	if _, err := loadProfiles(cfg); err != nil {
		return false, err
	}
	if err := d.setLevel(cfg); err != nil {
		return false, err
	}

	if len(frozen) > 0 {
		d.log.Warn("configuration changes need a restart; the running values stay until then", "needs_restart", frozen)
	}
	engineState := "kept, buckets kept"
	if eng != nil {
		old := d.engine.p.Load()
		select {
		case d.swap <- eng:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		d.engine.p.Store(eng)
		engineState = "replaced"
		d.log.Warn("detection content changed: new parsers and scenarios run from the next line; the old buckets are dropped",
			"buckets_dropped", old.Stats().Scenarios.Buckets, "scenarios", len(eng.Stats().Scenarios.Scenarios))
		d.content.cleanup()
		d.content, d.fingerprint, inUse = c, fp, true
	}
	started, kept, stopped, err := d.sources.replace(acqs)
	d.cfg = cfg
	d.waitPositioned(ctx, started)
	d.log.Info("configuration reloaded", "engine", engineState, "sources_kept", kept, "sources_started", len(started), "sources_stopped", stopped)
	return true, err
}

// keepFrozen puts back into next the settings that cannot change while
// moat runs and returns their keys.
func keepFrozen(running config.Config, next *config.Config) []string {
	var keys []string
	keep := func(key string, cur any, nxt any, restore func()) {
		if !reflect.DeepEqual(cur, nxt) {
			keys = append(keys, key)
			restore()
		}
	}
	keep("state_dir", running.StateDir, next.StateDir, func() { next.StateDir = running.StateDir })
	keep("api", running.API, next.API, func() { next.API = running.API })
	keep("metrics.listen", running.Metrics, next.Metrics, func() { next.Metrics = running.Metrics })
	keep("enforce", running.Enforce, next.Enforce, func() { next.Enforce = running.Enforce })
	keep("allowlist", running.Allowlist, next.Allowlist, func() { next.Allowlist = running.Allowlist })
	keep("allowlist_allow_wide", running.AllowlistAllowWide, next.AllowlistAllowWide, func() { next.AllowlistAllowWide = running.AllowlistAllowWide })
	keep("allowlist_files", running.AllowlistFiles, next.AllowlistFiles, func() { next.AllowlistFiles = running.AllowlistFiles })
	keep("allowlist_options", running.AllowlistOptions, next.AllowlistOptions, func() { next.AllowlistOptions = running.AllowlistOptions })
	keep("profiles", running.Profiles, next.Profiles, func() { next.Profiles = running.Profiles })
	keep("notifications", running.Notifications, next.Notifications, func() { next.Notifications = running.Notifications })
	keep("actions", running.Actions, next.Actions, func() { next.Actions = running.Actions })
	keep("fleet", running.Fleet, next.Fleet, func() { next.Fleet = running.Fleet })
	keep("feeds", running.Feeds, next.Feeds, func() { next.Feeds = running.Feeds })
	keep("geoip", running.GeoIP, next.GeoIP, func() { next.GeoIP = running.GeoIP })
	return keys
}

// fingerprint sums what the engine is built from: the hub and pattern
// files, the data files (by size and time: they can be large) and the
// settings the engine reads. Equal sums keep the running engine and its
// buckets.
func fingerprint(cfg config.Config, c content) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "items=%q max_buckets=%d simulation=%q data=%q\n", cfg.Hub.Items, cfg.Hub.MaxBuckets, cfg.Simulation, cfg.Hub.Data)
	fmt.Fprintf(h, "scenarios=%s\n", overridesText(cfg))
	fmt.Fprintf(h, "http=%q %q\n", cfg.HTTP.TrustedProxies, cfg.HTTP.ClientIPHeader)
	for _, dir := range append([]string{c.hubDir, c.patternDir}, c.hubOverlays...) {
		if err := sumTree(h, dir, true); err != nil {
			return "", err
		}
	}
	if err := sumTree(h, cfg.Hub.Data, false); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sumTree(h hash.Hash, dir string, contents bool) error {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !contents {
			fmt.Fprintf(h, "%s %d %d\n", rel, info.Size(), info.ModTime().UnixNano())
			return nil
		}
		fmt.Fprintf(h, "%s %d\n", rel, info.Size())
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read content %s: %w", dir, err)
	}
	return nil
}
