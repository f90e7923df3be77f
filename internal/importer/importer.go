// Package importer holds what the fail2ban and CrowdSec importers share:
// the result of an import (a moat.yaml fragment, the files it names,
// decisions, and a report of what has no equivalent) and how it is
// written out.
package importer

import (
	"bytes"
	"encoding/csv"
	"fmt"
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
	Allowlist   []string                  `yaml:"allowlist,omitempty"`
	Simulation  []string                  `yaml:"simulation,omitempty"`
	Scenarios   []config.ScenarioOverride `yaml:"scenarios,omitempty"`
}

// Hub is hub.items: the collections, parsers and scenarios to run.
type Hub struct {
	Items []string `yaml:"items"`
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
	Report    []Note
}

// Notef adds a note to the report.
func (r *Result) Notef(where, format string, args ...any) {
	r.Report = append(r.Report, Note{Where: where, Message: fmt.Sprintf(format, args...)})
}

// Names of what Write puts in the output directory.
const (
	ConfigFile    = "moat.yaml"
	DecisionsFile = "decisions.csv"
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
// decisions) and report.txt into dir.
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
