package crowdsec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/importer"
)

// moatSources are the acquisition sources moat reads in CrowdSec's
// format.
var moatSources = map[string]bool{"file": true, "journalctl": true, "syslog": true, "docker": true}

// droppedKeys are CrowdSec acquisition keys moat has no use for, and
// what to say when one is dropped.
var droppedKeys = map[string]string{
	"use_time_machine":        "buckets follow the wall clock while tailing; moat replay runs cold logs on their own timestamps",
	"unique_id":               "moat names a source by its name key",
	"transform":               "moat parses lines as read; an expression rewriting them has no equivalent",
	"max_buffer_size":         "moat bounds lines with max_line_length",
	"discovery_poll_enable":   "moat re-scans globs every poll_interval",
	"discovery_poll_interval": "moat re-scans globs every poll_interval",
	"tail_mode":               "moat follows files with inotify, or polls with poll_without_inotify",
	"since":                   "moat starts where it stopped, or at the end (start: head reads from the beginning)",
	"until":                   "moat reads on until stopped",
}

// acquisition translates acquis.yaml and acquis.d/*.yaml into files of
// moat's acquisition directory: one per CrowdSec file, each document
// checked with opts.CheckAcquisition.
func acquisition(r *importer.Result, c *csConfig, opts Options) error {
	var files []string
	if _, err := os.Stat(c.CrowdsecService.AcquisitionPath); err == nil {
		files = append(files, c.CrowdsecService.AcquisitionPath)
	}
	for _, ext := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(c.CrowdsecService.AcquisitionDir, ext))
		if err != nil {
			return err
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	if len(files) == 0 {
		r.Notef(c.File, "no acquisition file (%s, %s): nothing to read", c.CrowdsecService.AcquisitionPath, c.CrowdsecService.AcquisitionDir)
		return nil
	}
	var out []importer.File
	for _, f := range files {
		name := "crowdsec.yaml"
		if f != c.CrowdsecService.AcquisitionPath {
			name = "crowdsec-" + strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)) + ".yaml"
		}
		name = filepath.Join("acquis.d", name)
		data, err := convertAcquisFile(r, f, name, out, opts.CheckAcquisition)
		if err != nil {
			return err
		}
		if data != nil {
			out = append(out, importer.File{Name: name, Data: data})
		}
	}
	if len(out) == 0 {
		r.Notef(c.File, "no acquisition document moat can read: nothing to read")
		return nil
	}
	if opts.OutDir == "" {
		r.Notef("", "acquisition: %d file(s) left out; run with --out DIR to write them", len(out))
		return nil
	}
	r.Files = append(r.Files, out...)
	r.Fragment.Acquisition = &importer.Acquisition{Dir: filepath.Join(opts.OutDir, "acquis.d")}
	return nil
}

// convertAcquisFile returns the moat version of one acquisition file, nil
// when none of its documents carries over. Each document is checked with
// the files before it (done), as moat loads the directory.
func convertAcquisFile(r *importer.Result, path, name string, done []importer.File, check func([]importer.File) error) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# From CrowdSec's %s.\n", path)
	n := 0
	err = eachMapping(r, path, raw, func(m *yaml.Node) error {
		where := fmt.Sprintf("%s:%d", path, m.Line)
		if !convertAcquisDoc(r, where, m) {
			return nil
		}
		out, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		var next bytes.Buffer
		next.Write(b.Bytes())
		if n > 0 {
			next.WriteString("---\n")
		}
		fmt.Fprintf(&next, "# %s\n", where)
		next.Write(out)
		if check != nil {
			if err := check(append(slices.Clip(done), importer.File{Name: name, Data: next.Bytes()})); err != nil {
				r.Notef(where, "moat does not load this source (%v): left out", err)
				return nil
			}
		}
		b = next
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	return b.Bytes(), nil
}

// convertAcquisDoc rewrites one document in place into moat's dialect and
// reports whether it carries over: source is made explicit as CrowdSec
// guesses it, keys moat has no use for are dropped, and file names
// relative to CrowdSec's working directory are left out.
func convertAcquisDoc(r *importer.Result, where string, m *yaml.Node) bool {
	source := scalar(m, "source")
	if source == "" {
		switch {
		case value(m, "filename") != nil || value(m, "filenames") != nil:
			source = "file"
		case value(m, "journalctl_filter") != nil:
			source = "journalctl"
		default:
			r.Notef(where, "no source, filenames nor journalctl_filter: left out")
			return false
		}
		m.Content = append([]*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: "source"},
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: source},
		}, m.Content...)
	}
	if !moatSources[source] {
		r.Notef(where, "source %s has no moat equivalent (moat reads file, journalctl, syslog and docker): left out", source)
		return false
	}
	for _, k := range sortedKeys(droppedKeys) {
		if value(m, k) != nil {
			r.Notef(where, "%s dropped: %s", k, droppedKeys[k])
			del(m, k)
		}
	}
	if source == "file" {
		for _, key := range []string{"filename", "filenames"} {
			v := value(m, key)
			if v == nil {
				continue
			}
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				items = v.Content
			}
			var keep []*yaml.Node
			for _, it := range items {
				if it.Kind == yaml.ScalarNode && !filepath.IsAbs(it.Value) {
					r.Notef(where, "%s %s is relative to CrowdSec's working directory: left out", key, it.Value)
					continue
				}
				keep = append(keep, it)
			}
			switch {
			case len(keep) == 0:
				del(m, key)
			case v.Kind == yaml.SequenceNode:
				v.Content = keep
			}
		}
		if value(m, "filename") == nil && value(m, "filenames") == nil {
			r.Notef(where, "no file name left: left out")
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// value returns the value node of key in mapping m, nil when absent.
func value(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// scalar returns the scalar value of key in m, "" when absent or not a
// scalar.
func scalar(m *yaml.Node, key string) string {
	if v := value(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// del removes key from mapping m.
func del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// eachMapping calls fn on each non-empty mapping document of raw, in
// order. A YAML error ends the walk, noted at path: what came before it
// still carries over.
func eachMapping(r *importer.Result, path string, raw []byte, fn func(m *yaml.Node) error) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			r.Notef(path, "not YAML (%v): the rest of the file is left out", err)
			return nil
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode || len(doc.Content[0].Content) == 0 {
			continue
		}
		if err := fn(doc.Content[0]); err != nil {
			return err
		}
	}
}
