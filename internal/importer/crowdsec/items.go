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

// Kinds of hub items CrowdSec enables under its configuration directory;
// staged kinds have a stage directory (s01-parse) above the files.
var (
	itemKinds = []string{"collections", "parsers", "postoverflows", "scenarios", "contexts"}
	staged    = map[string]bool{"parsers": true, "postoverflows": true}
	// unsupportedKinds are CrowdSec item kinds moat has no engine for.
	unsupportedKinds = []string{"appsec-configs", "appsec-rules"}
)

// knownHubs are where CrowdSec's hub lives on Debian, besides hub_dir.
var knownHubs = []string{"/etc/crowdsec/hub", "/var/lib/crowdsec/hub", "/usr/share/crowdsec/hub"}

// item is one file CrowdSec has enabled.
type item struct {
	kind, stage string
	// path is the enabled file under config_dir; file what it resolves to.
	path, file string
	// ref is kind/author/name, as moat's hub names the item.
	ref     string
	fromHub bool
	docs    []itemDoc
}

// itemDoc is what the import reads of one YAML document of an item.
type itemDoc struct {
	Name      string     `yaml:"name"`
	Filter    string     `yaml:"filter"`
	Whitelist *whitelist `yaml:"whitelist"`
	Data      []dataFile `yaml:"data"`
	Nodes     []any      `yaml:"nodes"`
	Grok      any        `yaml:"grok"`
	Statics   []any      `yaml:"statics"`
	// A collection's members.
	Parsers       []string `yaml:"parsers"`
	Scenarios     []string `yaml:"scenarios"`
	Postoverflows []string `yaml:"postoverflows"`
	Collections   []string `yaml:"collections"`
	Contexts      []string `yaml:"contexts"`
}

type whitelist struct {
	Reason     string   `yaml:"reason"`
	IP         []string `yaml:"ip"`
	CIDR       []string `yaml:"cidr"`
	Expression []string `yaml:"expression"`
}

type dataFile struct {
	DestFile string `yaml:"dest_file"`
}

// hubItems turns the items CrowdSec has enabled into the moat hub install
// of the hub's items, local copies of the others, and allowlist entries
// for the whitelists that are plain addresses and ranges.
func hubItems(r *importer.Result, c *csConfig, opts Options) error {
	items, err := scanItems(r, c)
	if err != nil {
		return err
	}
	// Members of an enabled hub collection come with it; a local
	// collection's members must be installed by name.
	covered := map[string]bool{}
	for _, it := range items {
		if it.kind != "collections" || !it.fromHub {
			continue
		}
		for _, d := range it.docs {
			for _, m := range []struct {
				kind  string
				names []string
			}{{"parsers", d.Parsers}, {"scenarios", d.Scenarios}, {"postoverflows", d.Postoverflows}, {"collections", d.Collections}, {"contexts", d.Contexts}} {
				for _, n := range m.names {
					covered[m.kind+"/"+n] = true
				}
			}
		}
	}
	enabled := map[string]bool{}
	for _, it := range items {
		enabled[it.ref] = true
	}
	for _, it := range items {
		if it.kind != "collections" {
			continue
		}
		for _, d := range it.docs {
			for _, m := range slices.Concat(prefixed("parsers", d.Parsers), prefixed("scenarios", d.Scenarios), prefixed("postoverflows", d.Postoverflows)) {
				if !enabled[m] {
					r.Notef(it.path, "%s names %s, which CrowdSec does not have enabled: moat hub install installs it with the collection", it.ref, m)
				}
			}
		}
	}
	install := installFrom(r, c)
	var local []string
	seenAllow := map[string]bool{}
	for _, it := range items {
		if wl, ok := plainWhitelist(it); ok {
			r.Notef(it.path, "%s: a whitelist of addresses and ranges only, carried over as allowlist entries", it.ref)
			allowEntries(r, it, wl, seenAllow)
			continue
		}
		if slices.ContainsFunc(it.docs, func(d itemDoc) bool { return d.Whitelist != nil }) {
			r.Notef(it.path, "%s: a whitelist with expressions or a filter is kept as a hub item, not an allowlist", it.ref)
		}
		missing := it.missingData(c.ConfigPaths.DataDir)
		if it.fromHub {
			if len(missing) > 0 {
				install.AllowMissingData = true
				r.Notef(it.path, "%s names data file(s) %s, missing from CrowdSec's data_dir %s (CrowdSec runs it without them): the install takes --allow-missing-data to do the same", it.ref, strings.Join(missing, ", "), c.ConfigPaths.DataDir)
			}
			if !covered[it.ref] {
				install.Items = append(install.Items, it.ref)
			}
			continue
		}
		if len(missing) > 0 {
			r.Notef(it.path, "local item %s names data file(s) %s, missing from CrowdSec's data_dir %s: put them in hub.data", it.ref, strings.Join(missing, ", "), c.ConfigPaths.DataDir)
		} else if d := it.dataFiles(); len(d) > 0 {
			r.Notef(it.path, "local item %s reads data file(s) %s: copy them from %s into hub.data", it.ref, strings.Join(d, ", "), c.ConfigPaths.DataDir)
		}
		if err := copyLocal(r, it); err != nil {
			return err
		}
		local = append(local, it.ref)
	}
	sort.Strings(install.Items)
	if len(install.Items) > 0 {
		r.HubInstall = install
	}
	if len(local) > 0 {
		if opts.OutDir == "" {
			r.Notef("", "local hub items (%s): left out; run with --out DIR to write them", strings.Join(local, ", "))
			local = nil
		} else {
			r.Fragment.Hub = &importer.Hub{Dir: filepath.Join(opts.OutDir, "hub")}
			r.Notef("", "local hub items (%s): copied under %s, the fragment's hub.dir", strings.Join(local, ", "), r.Fragment.Hub.Dir)
		}
	}
	names := slices.Concat(install.Items, local)
	if len(names) == 0 {
		r.Notef(c.ConfigPaths.ConfigDir, "no hub item enabled: hub.items is left to its default (all shipped content)")
		return nil
	}
	if r.Fragment.Hub == nil {
		r.Fragment.Hub = &importer.Hub{}
	}
	sort.Strings(names)
	r.Fragment.Hub.Items = names
	return nil
}

// installFrom is the moat hub install from CrowdSec's own hub, data
// directory and grok patterns, those that exist; without hub_dir moat's
// default source (Debian's snapshot) stands in.
func installFrom(r *importer.Result, c *csConfig) *importer.HubInstall {
	isDir := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.IsDir()
	}
	h := &importer.HubInstall{}
	if isDir(c.ConfigPaths.HubDir) {
		h.Source = c.ConfigPaths.HubDir
	} else {
		r.Notef(c.File, "hub_dir %s does not exist: the hub items are installed from moat hub install's default source; give it --source if that lacks them", c.ConfigPaths.HubDir)
	}
	if isDir(c.ConfigPaths.DataDir) {
		h.Data = c.ConfigPaths.DataDir
	}
	if p := filepath.Join(c.ConfigPaths.ConfigDir, "patterns"); isDir(p) {
		h.Patterns = p
	}
	return h
}

func prefixed(kind string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = kind + "/" + n
	}
	return out
}

// scanItems lists the items enabled under config_dir, in kind and path
// order.
func scanItems(r *importer.Result, c *csConfig) ([]item, error) {
	roots := hubRoots(c.ConfigPaths.HubDir)
	var items []item
	for _, kind := range itemKinds {
		pattern := filepath.Join(c.ConfigPaths.ConfigDir, kind, "*")
		if staged[kind] {
			pattern = filepath.Join(c.ConfigPaths.ConfigDir, kind, "*", "*")
		}
		var files []string
		for _, ext := range []string{".yaml", ".yml"} {
			m, err := filepath.Glob(pattern + ext)
			if err != nil {
				return nil, err
			}
			files = append(files, m...)
		}
		sort.Strings(files)
		for _, f := range files {
			it, ok, err := readItem(r, kind, f, roots)
			if err != nil {
				return nil, err
			}
			if ok {
				items = append(items, it)
			}
		}
	}
	for _, kind := range unsupportedKinds {
		if m, _ := filepath.Glob(filepath.Join(c.ConfigPaths.ConfigDir, kind, "*.yaml")); len(m) > 0 {
			r.Notef(filepath.Join(c.ConfigPaths.ConfigDir, kind), "%d %s: moat has no AppSec engine; left out", len(m), kind)
		}
	}
	return items, nil
}

// hubRoots are the directories whose files are hub items: hub_dir and
// Debian's, as given and with symbolic links resolved.
func hubRoots(hubDir string) []string {
	var roots []string
	for _, d := range append([]string{hubDir}, knownHubs...) {
		roots = append(roots, filepath.Clean(d))
		if real, err := filepath.EvalSymlinks(d); err == nil {
			roots = append(roots, real)
		}
	}
	return roots
}

func under(path string, roots []string) bool {
	for _, root := range roots {
		if rel, err := filepath.Rel(root, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && rel != "." {
			return true
		}
	}
	return false
}

// readItem reads one enabled file; ok is false for a link to nowhere,
// which is reported.
func readItem(r *importer.Result, kind, path string, roots []string) (it item, ok bool, err error) {
	it = item{kind: kind, path: path, file: path}
	if staged[kind] {
		it.stage = filepath.Base(filepath.Dir(path))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return it, false, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(path)
		if err != nil {
			return it, false, err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			r.Notef(path, "a link to %s, which does not exist (CrowdSec skips it too): left out", target)
			return it, false, nil
		}
		it.file = real
		it.fromHub = under(filepath.Clean(target), roots) || under(real, roots)
	}
	raw, err := os.ReadFile(it.file)
	if err != nil {
		return it, false, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d itemDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Notef(path, "not read (%v): left out", err)
			return it, false, nil
		}
		it.docs = append(it.docs, d)
	}
	it.ref = it.name()
	return it, true, nil
}

// name is the item's kind/author/name: a hub item's from its place in the
// hub (author/file), which is how a hub source finds it; a local item's
// from its name: key when that has an author, else local/file.
func (it *item) name() string {
	base := strings.TrimSuffix(filepath.Base(it.file), filepath.Ext(it.file))
	if it.fromHub {
		return it.kind + "/" + filepath.Base(filepath.Dir(it.file)) + "/" + base
	}
	author := "local"
	for _, d := range it.docs {
		if a, _, ok := strings.Cut(d.Name, "/"); ok && a != "" && !strings.ContainsAny(a, `\.`) {
			author = a
			break
		}
	}
	return it.kind + "/" + author + "/" + strings.TrimSuffix(filepath.Base(it.path), filepath.Ext(it.path))
}

// plainWhitelist returns the whitelist of an item that is nothing else:
// one document, addresses and ranges only, no filter.
func plainWhitelist(it item) (*whitelist, bool) {
	if it.kind != "parsers" && it.kind != "postoverflows" || len(it.docs) != 1 {
		return nil, false
	}
	d := it.docs[0]
	wl := d.Whitelist
	if wl == nil || len(wl.Expression) > 0 || len(wl.IP)+len(wl.CIDR) == 0 || strings.TrimSpace(d.Filter) != "" ||
		len(d.Nodes) > 0 || d.Grok != nil || len(d.Statics) > 0 || len(d.Data) > 0 {
		return nil, false
	}
	return wl, true
}

// allowEntries adds a plain whitelist's addresses and ranges to the
// allowlist, each commented with the whitelist's name and reason.
func allowEntries(r *importer.Result, it item, wl *whitelist, seen map[string]bool) {
	comment := "CrowdSec whitelist " + strings.TrimPrefix(it.ref, it.kind+"/")
	if wl.Reason != "" {
		comment += ": " + wl.Reason
	}
	for _, e := range slices.Concat(wl.IP, wl.CIDR) {
		v, ok, why := importer.AllowValue(strings.TrimSpace(e))
		if why != "" {
			r.Notef(it.path, "%s: left out", why)
		}
		if !ok || seen[v] {
			continue
		}
		seen[v] = true
		r.Fragment.Allowlist = append(r.Fragment.Allowlist, importer.AllowEntry{Value: v, Comment: comment})
	}
}

func (it *item) dataFiles() []string {
	var out []string
	for _, d := range it.docs {
		for _, f := range d.Data {
			if f.DestFile != "" && !slices.Contains(out, f.DestFile) {
				out = append(out, f.DestFile)
			}
		}
	}
	return out
}

// missingData lists the data files the item names that dataDir lacks.
func (it *item) missingData(dataDir string) []string {
	var out []string
	for _, f := range it.dataFiles() {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			out = append(out, f)
		}
	}
	return out
}

// copyLocal adds a local item to the files written, at the place moat's
// hub layout gives its name.
func copyLocal(r *importer.Result, it item) error {
	raw, err := os.ReadFile(it.file)
	if err != nil {
		return err
	}
	parts := strings.SplitN(it.ref, "/", 3) // kind, author, name
	dir := filepath.Join("hub", it.kind)
	if it.stage != "" {
		dir = filepath.Join(dir, it.stage)
	}
	name := filepath.Join(dir, parts[1], parts[2]+".yaml")
	head := fmt.Sprintf("# Local CrowdSec item, from %s.\n", it.path)
	r.Files = append(r.Files, importer.File{Name: name, Data: append([]byte(head), raw...)})
	return nil
}
