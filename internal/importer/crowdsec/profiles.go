package crowdsec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/importer"
)

// profiles carries profiles.yaml over: moat reads CrowdSec's format, so
// each profile is kept as written but for the notification plugins it
// names, and one moat refuses is left out.
func profiles(r *importer.Result, c *csConfig, opts Options) error {
	path := c.API.Server.ProfilesPath
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		r.Notef(path, "no profiles file: moat's default profiles apply")
		return nil
	}
	if err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Alert -> decision policy, from CrowdSec's %s.\n", path)
	n := 0
	err = eachMapping(r, path, raw, func(m *yaml.Node) error {
		where := fmt.Sprintf("%s:%d: profile %s", path, m.Line, scalar(m, "name"))
		if v := value(m, "notifications"); v != nil {
			var names []string
			for _, it := range v.Content {
				names = append(names, it.Value)
			}
			r.Notef(where, "notifications %s dropped: CrowdSec's plugins are not carried over; add moat channels (notifications: in moat.yaml) and name them here again", strings.Join(names, ", "))
			del(m, "notifications")
		}
		if v := value(m, "decisions"); v != nil && v.Kind == yaml.SequenceNode {
			for _, d := range v.Content {
				if t := scalar(d, "type"); t != "" && t != "ban" {
					r.Notef(where, "decision type %s: moat stores it and serves it to bouncers; its own kernel backends enforce bans only", t)
				}
			}
		}
		out, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		if opts.CheckProfiles != nil {
			if err := opts.CheckProfiles(path, out); err != nil {
				r.Notef(where, "moat does not load this profile (%v): left out", err)
				return nil
			}
		}
		if n > 0 {
			b.WriteString("---\n")
		}
		b.Write(out)
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		r.Notef(path, "no profile moat can load: moat's default profiles apply")
		return nil
	}
	if opts.CheckProfiles != nil {
		if err := opts.CheckProfiles(path, b.Bytes()); err != nil {
			r.Notef(path, "moat does not load the profiles together (%v): moat's default profiles apply", err)
			return nil
		}
	}
	if opts.OutDir == "" {
		r.Notef("", "profiles: left out; run with --out DIR to write them")
		return nil
	}
	r.Files = append(r.Files, importer.File{Name: "profiles.yaml", Data: b.Bytes()})
	r.Fragment.Profiles = filepath.Join(opts.OutDir, "profiles.yaml")
	return nil
}

// simulation translates simulation.yaml: with simulation off, the
// exclusions are the simulated scenarios (moat's simulation:); with it on,
// every scenario is simulated but the exclusions.
func simulation(r *importer.Result, c *csConfig) error {
	path := c.ConfigPaths.SimulationPath
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var s struct {
		// CrowdSec reads YAML 1.1, where on and off are booleans.
		Simulation string   `yaml:"simulation"`
		Exclusions []string `yaml:"exclusions"`
	}
	if err := yaml.Unmarshal(raw, &s); err != nil {
		r.Notef(path, "not read (%v): no scenario is simulated", err)
		return nil
	}
	switch strings.ToLower(s.Simulation) {
	case "on", "true", "yes", "y":
		on, off := true, false
		r.Fragment.Scenarios = append(r.Fragment.Scenarios, config.ScenarioOverride{Name: "*", Simulate: &on})
		for _, e := range s.Exclusions {
			r.Fragment.Scenarios = append(r.Fragment.Scenarios, config.ScenarioOverride{Name: e, Simulate: &off})
		}
	default:
		r.Fragment.Simulation = append(r.Fragment.Simulation, s.Exclusions...)
	}
	return nil
}
