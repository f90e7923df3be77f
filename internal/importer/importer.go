// Package importer holds what the fail2ban and CrowdSec importers share:
// the result of an import (a moat.yaml fragment, the files it names,
// decisions, and a report of what has no equivalent) and how it is
// written out.
package importer

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/config"
)

// Fragment is the part of moat.yaml an import sets; everything else keeps
// moat's defaults.
type Fragment struct {
	Hub         *Hub                      `yaml:"hub,omitempty"`
	Acquisition *Acquisition              `yaml:"acquisition,omitempty"`
	Profiles    string                    `yaml:"profiles,omitempty"`
	Allowlist   []AllowEntry              `yaml:"allowlist,omitempty"`
	Simulation  []string                  `yaml:"simulation,omitempty"`
	Scenarios   []config.ScenarioOverride `yaml:"scenarios,omitempty"`
}

// Hub is hub.items: the collections, parsers and scenarios to run; and
// hub.dir when the import brings local items of its own.
type Hub struct {
	Dir   string   `yaml:"dir,omitempty"`
	Items []string `yaml:"items"`
}

// AllowEntry is one allowlist: item, written as a bare value unless it
// has a comment or an expiry.
type AllowEntry struct {
	Value   string `yaml:"value"`
	Comment string `yaml:"comment,omitempty"`
	Expires string `yaml:"expires,omitempty"`
}

// MarshalYAML writes a bare value when that says it all.
func (e AllowEntry) MarshalYAML() (any, error) {
	if e.Comment == "" && e.Expires == "" {
		return e.Value, nil
	}
	type entry AllowEntry // without the method
	return entry(e), nil
}

// AllowValue returns an allowlist value as moat writes it: addresses and
// ranges in canonical form, hostnames as they are. ok is false for what
// moat need not or cannot take: loopback (never banned anyway), with why
// empty, and ranges wider than moat accepts without allowlist_allow_wide,
// with why saying so.
func AllowValue(s string) (v string, ok bool, why string) {
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Addr().IsLoopback() {
			return "", false, ""
		}
		if p.Addr().Is4() && p.Bits() < 8 || p.Addr().Is6() && p.Bits() < 32 {
			return "", false, s + " is wider than moat accepts without allowlist_allow_wide"
		}
		if p.IsSingleIP() {
			return p.Addr().String(), true, ""
		}
		return p.String(), true, ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.IsLoopback() {
			return "", false, ""
		}
		return a.Unmap().String(), true, ""
	}
	return s, true, ""
}

// HubInstall is the moat hub install that brings in the hub items the
// fragment's hub.items names.
type HubInstall struct {
	Items []string
	// Source, Data and Patterns are the --source, --data-source and
	// --patterns-source flags; "" leaves moat's default.
	Source, Data, Patterns string
	AllowMissingData       bool
}

// Args are the arguments of moat for the install, with config as
// --config when not "".
func (h *HubInstall) Args(config string) []string {
	args := []string{"hub", "install"}
	if config != "" {
		args = append(args, "--config", config)
	}
	for _, f := range []struct{ flag, v string }{{"--source", h.Source}, {"--data-source", h.Data}, {"--patterns-source", h.Patterns}} {
		if f.v != "" {
			args = append(args, f.flag, f.v)
		}
	}
	if h.AllowMissingData {
		args = append(args, "--allow-missing-data")
	}
	return append(args, h.Items...)
}

// Acquisition is acquisition.dir.
type Acquisition struct {
	Dir string `yaml:"dir"`
}

// File is a file the fragment names, relative to the output directory.
type File struct {
	Name string
	Data []byte
}

// Decision is an active ban carried over, in the columns moat decisions
// import reads.
type Decision struct {
	Value, Duration, Reason, Scenario string
}

// Note is one thing the import could not carry over as it was, and where
// it was written.
type Note struct {
	Where   string
	Message string
}

func (n Note) String() string {
	if n.Where == "" {
		return n.Message
	}
	return n.Where + ": " + n.Message
}

// Result is an import's output.
type Result struct {
	Fragment  Fragment
	Files     []File
	Decisions []Decision
	// HubInstall, when set, must run before the fragment loads.
	HubInstall *HubInstall
	Report     []Note
}

// Notef adds a note to the report.
func (r *Result) Notef(where, format string, args ...any) {
	r.Report = append(r.Report, Note{Where: where, Message: fmt.Sprintf(format, args...)})
}

// Names of what Write puts in the output directory.
const (
	ConfigFile    = "moat.yaml"
	DecisionsFile = "decisions.csv"
	HubItemsFile  = "hub-items.txt"
	ReportFile    = "report.txt"
)

// YAML is the fragment as moat.yaml text, the report heading it as
// comments.
func (r *Result) YAML(origin string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# moat configuration imported from %s.\n", origin)
	if len(r.Report) > 0 {
		b.WriteString("# Not carried over as it was (see also " + ReportFile + " with --out):\n")
		for _, n := range r.Report {
			for _, l := range strings.Split(n.String(), "\n") {
				b.WriteString("#   " + l + "\n")
			}
		}
	}
	body, err := yaml.Marshal(r.Fragment)
	if err != nil {
		return nil, err
	}
	if string(body) != "{}\n" {
		b.Write(body)
	}
	return b.Bytes(), nil
}

// DecisionsCSV is the decisions in the CSV moat decisions import reads.
func (r *Result) DecisionsCSV() ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.Write([]string{"value", "duration", "reason", "scope", "scenario"}); err != nil {
		return nil, err
	}
	for _, d := range r.Decisions {
		scope := "ip"
		if strings.Contains(d.Value, "/") {
			scope = "range"
		}
		if err := w.Write([]string{d.Value, d.Duration, d.Reason, scope, d.Scenario}); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return b.Bytes(), w.Error()
}

// Write puts moat.yaml, the files it names, decisions.csv (when there are
// decisions), hub-items.txt (when items are to be installed) and
// report.txt into dir.
func (r *Result) Write(dir, origin string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	y, err := r.YAML(origin)
	if err != nil {
		return err
	}
	files := append([]File{{Name: ConfigFile, Data: y}}, r.Files...)
	if len(r.Decisions) > 0 {
		d, err := r.DecisionsCSV()
		if err != nil {
			return err
		}
		files = append(files, File{Name: DecisionsFile, Data: d})
	}
	if r.HubInstall != nil && len(r.HubInstall.Items) > 0 {
		files = append(files, File{Name: HubItemsFile, Data: []byte(strings.Join(r.HubInstall.Items, "\n") + "\n")})
	}
	var rep bytes.Buffer
	for _, n := range r.Report {
		rep.WriteString(n.String() + "\n")
	}
	files = append(files, File{Name: ReportFile, Data: rep.Bytes()})
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// FormatDuration writes d as moat reads it, in the largest whole unit.
func FormatDuration(d int64) string {
	switch {
	case d%3600 == 0:
		return fmt.Sprintf("%dh", d/3600)
	case d%60 == 0:
		return fmt.Sprintf("%dm", d/60)
	}
	return fmt.Sprintf("%ds", d)
}
