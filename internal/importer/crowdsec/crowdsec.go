// Package crowdsec reads a CrowdSec configuration directory (config.yaml
// and its .local patch, acquisition, profiles, simulation, the hub items
// it has enabled and its whitelists) and its SQLite database (active
// decisions, allowlists), and translates them into moat configuration,
// with a report of what has no equivalent.
//
// It works on plain YAML: internal/ may not import detect or enforce, so
// the caller hands in the loaders that decide whether an acquisition or a
// profiles file is one moat accepts (Options.CheckAcquisition,
// Options.CheckProfiles).
package crowdsec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/importer"
)

// DefaultDir is where Debian installs CrowdSec's configuration.
const DefaultDir = "/etc/crowdsec"

// ErrNoConfig is returned when the directory holds no config.yaml.
var ErrNoConfig = errors.New("no CrowdSec configuration (config.yaml)")

// Options tune Import.
type Options struct {
	// OutDir is where the acquisition, profiles and local hub files will
	// be written, for the fragment to name; "" leaves them out.
	OutDir string
	// DB, when DBSet, replaces config.yaml's db_config.db_path; "" then
	// skips the database.
	DB    string
	DBSet bool
	Now   time.Time
	// CheckAcquisition loads acquisition files (named as written, under
	// acquis.d/) as moat loads its acquisition directory, and
	// CheckProfiles a profiles file; each returns moat's error. A document
	// they refuse is left out and reported. Nil accepts everything.
	CheckAcquisition func(files []importer.File) error
	CheckProfiles    func(name string, data []byte) error
}

// Import translates the CrowdSec configuration in dir.
func Import(ctx context.Context, dir string, opts Options) (*importer.Result, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, err
	}
	r := &importer.Result{}
	cfg.notes(r)
	if err := acquisition(r, cfg, opts); err != nil {
		return nil, err
	}
	if err := profiles(r, cfg, opts); err != nil {
		return nil, err
	}
	if err := simulation(r, cfg); err != nil {
		return nil, err
	}
	if err := hubItems(r, cfg, opts); err != nil {
		return nil, err
	}
	db := cfg.DBConfig.DBPath
	if opts.DBSet {
		db = opts.DB
	}
	switch {
	case db == "":
	case cfg.DBConfig.Type != "" && cfg.DBConfig.Type != "sqlite" && !opts.DBSet:
		r.Notef(cfg.File, "db_config.type %s: only CrowdSec's SQLite database is read: active decisions, allowlists and bouncers are not carried over (moat decisions import takes decisions as CSV or JSON)", cfg.DBConfig.Type)
	default:
		if err := database(ctx, r, db, opts.Now); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// csConfig is what the import reads of config.yaml, its paths made
// absolute and moved under the imported directory when they pointed into
// config_dir.
type csConfig struct {
	File        string `yaml:"-"`
	ConfigPaths struct {
		ConfigDir       string `yaml:"config_dir"`
		DataDir         string `yaml:"data_dir"`
		SimulationPath  string `yaml:"simulation_path"`
		HubDir          string `yaml:"hub_dir"`
		NotificationDir string `yaml:"notification_dir"`
	} `yaml:"config_paths"`
	CrowdsecService struct {
		AcquisitionPath string `yaml:"acquisition_path"`
		AcquisitionDir  string `yaml:"acquisition_dir"`
	} `yaml:"crowdsec_service"`
	DBConfig struct {
		Type   string `yaml:"type"`
		DBPath string `yaml:"db_path"`
	} `yaml:"db_config"`
	API struct {
		Server struct {
			Enable       *bool  `yaml:"enable"`
			ListenURI    string `yaml:"listen_uri"`
			ProfilesPath string `yaml:"profiles_path"`
			OnlineClient *struct {
				CredentialsPath string `yaml:"credentials_path"`
			} `yaml:"online_client"`
		} `yaml:"server"`
	} `yaml:"api"`
	Prometheus struct {
		Enabled    bool   `yaml:"enabled"`
		ListenAddr string `yaml:"listen_addr"`
		ListenPort int    `yaml:"listen_port"`
	} `yaml:"prometheus"`
}

// loadConfig reads dir/config.yaml, patched by config.yaml.local as
// CrowdSec does, with environment variables expanded as CrowdSec 1.4
// does, and fills in CrowdSec's defaults.
func loadConfig(dir string) (*csConfig, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "config.yaml")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoConfig)
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(os.ExpandEnv(string(raw))), &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if local, err := os.ReadFile(path + ".local"); err == nil {
		var patch map[string]any
		if err := yaml.Unmarshal([]byte(os.ExpandEnv(string(local))), &patch); err != nil {
			return nil, fmt.Errorf("%s.local: %w", path, err)
		}
		doc = merge(doc, patch)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	merged, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	c := &csConfig{File: path}
	if err := yaml.Unmarshal(merged, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.defaults(dir)
	return c, nil
}

// merge lays patch over base: mappings merge key by key, anything else
// is replaced.
func merge(base, patch map[string]any) map[string]any {
	if base == nil {
		base = map[string]any{}
	}
	for k, v := range patch {
		if pm, ok := v.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				base[k] = merge(bm, pm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// defaults fills what config.yaml leaves out as CrowdSec would, then
// moves every path under config_dir to dir: a copy of /etc/crowdsec
// imports its own files, not the live ones.
func (c *csConfig) defaults(dir string) {
	p := &c.ConfigPaths
	orig := p.ConfigDir
	if orig == "" {
		orig = DefaultDir
	}
	orig = filepath.Clean(orig)
	p.ConfigDir = dir
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
			return
		}
		*v = filepath.Clean(*v)
		if rel, err := filepath.Rel(orig, *v); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			*v = filepath.Join(dir, rel)
		}
	}
	set(&p.DataDir, "/var/lib/crowdsec/data")
	set(&p.HubDir, filepath.Join(dir, "hub"))
	set(&p.SimulationPath, filepath.Join(dir, "simulation.yaml"))
	set(&p.NotificationDir, filepath.Join(dir, "notifications"))
	set(&c.CrowdsecService.AcquisitionPath, filepath.Join(dir, "acquis.yaml"))
	set(&c.CrowdsecService.AcquisitionDir, filepath.Join(dir, "acquis.d"))
	set(&c.API.Server.ProfilesPath, filepath.Join(dir, "profiles.yaml"))
	if c.DBConfig.Type == "" || c.DBConfig.Type == "sqlite" {
		set(&c.DBConfig.DBPath, filepath.Join(p.DataDir, "crowdsec.db"))
	}
}

// notes reports the settings of config.yaml that have a moat counterpart
// of their own, which the fragment leaves at moat's default.
func (c *csConfig) notes(r *importer.Result) {
	s := c.API.Server
	if (s.Enable == nil || *s.Enable) && s.ListenURI != "" {
		r.Notef(c.File, "api.server.listen_uri %s: moat's bouncer API (CrowdSec LAPI-compatible) listens on api.listen (127.0.0.1:8088 by default); register each bouncer again with moat bouncers add NAME and point it there, or set api.listen to %s once CrowdSec is stopped", s.ListenURI, s.ListenURI)
	}
	if s.OnlineClient != nil && s.OnlineClient.CredentialsPath != "" {
		if fi, err := os.Stat(s.OnlineClient.CredentialsPath); err == nil && fi.Size() > 0 {
			r.Notef(c.File, "api.server.online_client: CrowdSec's central API is not carried over; moat's community: section (off by default) shares signals with, and pulls a blocklist from, a server you choose")
		}
	}
	if c.Prometheus.Enabled {
		r.Notef(c.File, "prometheus on %s:%d: moat serves its own metrics (moat_*) on metrics.listen (127.0.0.1:9641 by default)", c.Prometheus.ListenAddr, c.Prometheus.ListenPort)
	}
	if ents, err := os.ReadDir(c.ConfigPaths.NotificationDir); err == nil {
		var names []string
		for _, e := range ents {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			r.Notef(c.ConfigPaths.NotificationDir, "notification plugins (%s) are not carried over: moat's notifications: section has webhook, email and file channels (docs/notifications.md)", strings.Join(names, ", "))
		}
	}
}
