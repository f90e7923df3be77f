package setup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/internal/yamlerr"
)

// OwnFile is the acquisition file setup writes, and the only one it
// rewrites.
const OwnFile = "moat-setup.yaml"

// Service statuses in a plan.
const (
	StatusAdd        = "add"          // an entry is added for it
	StatusConfigured = "configured"   // an acquisition file reads it already
	StatusNoSource   = "no-log-found" // found, but no log to read
)

// Hub actions in a plan.
const (
	HubShipped     = "shipped"              // part of moat's content, active
	HubNotInItems  = "shipped-not-in-items" // hub.items leaves it out
	HubInstall     = "install"              // moat hub install NAME
	HubNotInSource = "not-in-hub-source"
	HubNoSource    = "no-hub-source"
)

// Plan is what setup would do.
type Plan struct {
	Services    []PlannedService `json:"services"`
	Acquisition []Entry          `json:"acquisition"`
	// Carry are acquisition files moat read from its fallback while the
	// acquisition directory did not exist; creating the directory ends
	// that fallback, so they are written into it too.
	Carry []string  `json:"carry,omitempty"`
	Hub   []HubItem `json:"hub"`
	Notes []string  `json:"notes,omitempty"`
}

// PlannedService is one service found on the host.
type PlannedService struct {
	Name     string   `json:"name"`
	Evidence []string `json:"evidence"`
	Status   string   `json:"status"`
	// ReadBy is the file:line of the acquisition entry already reading it.
	ReadBy     string `json:"read_by,omitempty"`
	Source     string `json:"source,omitempty"`
	Collection string `json:"collection,omitempty"`
}

// Entry is one acquisition document setup adds.
type Entry struct {
	Name          string   `json:"name"`
	Services      []string `json:"services"`
	Evidence      []string `json:"evidence"`
	Source        string   `json:"source"`
	Filenames     []string `json:"filenames,omitempty"`
	JournalFilter []string `json:"journalctl_filter,omitempty"`
	Type          string   `json:"type"`
}

// HubItem is a collection the services need.
type HubItem struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	Action   string   `json:"action"`
}

// Existing is the acquisition the daemon reads today.
type Existing struct {
	Configs []acquire.Config
	// Carry holds the fallback's files, by name, when the directory is
	// missing and the daemon reads the fallback instead.
	Carry map[string][]byte
}

// LoadExisting reads the acquisition directory, except setup's own file
// (which a new plan replaces). A missing directory means the daemon reads
// fallback (the shipped acquis.d): that is what is read today.
func LoadExisting(dir string, fallback fs.FS) (Existing, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) && fallback != nil {
		return loadFallback(fallback)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Existing{}, fmt.Errorf("acquisition dir: %w", err)
	}
	var ex Existing
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || n == OwnFile || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		p := filepath.Join(dir, n)
		data, err := yamlerr.ReadFile(p, yamlerr.MaxConfigFile)
		if err != nil {
			return Existing{}, fmt.Errorf("read acquisition file: %w", err)
		}
		cs, err := acquire.LoadConfig(p, data)
		if err != nil {
			return Existing{}, err
		}
		ex.Configs = append(ex.Configs, cs...)
	}
	return ex, nil
}

func loadFallback(fsys fs.FS) (Existing, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return Existing{}, err
	}
	ex := Existing{Carry: map[string][]byte{}}
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return Existing{}, fmt.Errorf("built-in acquisition %s: %w", n, err)
		}
		cs, err := acquire.LoadConfig(n, data)
		if err != nil {
			return Existing{}, err
		}
		ex.Configs = append(ex.Configs, cs...)
		ex.Carry[n] = data
	}
	return ex, nil
}

// PlanOptions are the inputs of a plan besides what was found.
type PlanOptions struct {
	Existing Existing
	// HubItems is hub.items: when not empty, only these run.
	HubItems []string
	// HubCollections are the collections the hub source offers; nil when
	// there is no hub source.
	HubCollections map[string]bool
}

// BuildPlan decides, for every service found, what reads its log and
// which collection parses it. It never plans a second reader of a log
// that an acquisition entry reads already: every line would count twice
// and ban at half the threshold.
func BuildPlan(services []Service, inv Inventory, opts PlanOptions) Plan {
	p := Plan{Notes: inv.Notes, Acquisition: []Entry{}, Hub: []HubItem{}, Services: []PlannedService{}}
	for n := range opts.Existing.Carry {
		p.Carry = append(p.Carry, n)
	}
	sort.Strings(p.Carry)
	for _, s := range services {
		ev := inv.Evidence(s)
		if len(ev) == 0 {
			continue
		}
		ps := PlannedService{Name: s.Name, Evidence: ev, Collection: s.Collection}
		if ps.Collection == "" {
			ps.Collection = s.Hub
		}
		if where, ok := readBy(opts.Existing.Configs, s, inv); ok {
			ps.Status, ps.ReadBy = StatusConfigured, where
		} else if e, ok := entryFor(s, inv); ok {
			ps.Status, ps.Source = StatusAdd, e.Source
			p.Acquisition = addEntry(p.Acquisition, e, ev)
		} else {
			ps.Status = StatusNoSource
		}
		p.Services = append(p.Services, ps)
		p.Hub = addHub(p.Hub, s, opts)
	}
	return p
}

// readBy finds an existing entry that reads the service's log: a journal
// filter on one of its identifiers, or a file pattern that covers one of
// its globs or files.
func readBy(cs []acquire.Config, s Service, inv Inventory) (string, bool) {
	for i := range cs {
		c := &cs[i]
		switch c.Source {
		case acquire.KindJournal:
			for _, f := range c.JournalctlFilter {
				id, ok := strings.CutPrefix(f, "SYSLOG_IDENTIFIER=")
				if ok && slices.Contains(s.Journal, id) {
					return c.Where(), true
				}
			}
		case acquire.KindFile:
			for _, pat := range c.Patterns() {
				for _, g := range s.Logs {
					if globCovers(pat, g) {
						return c.Where(), true
					}
					for _, f := range inv.Logs[g] {
						if ok, _ := path.Match(pat, f); ok {
							return c.Where(), true
						}
					}
				}
			}
		}
	}
	return "", false
}

// globCovers reports whether pattern pat matches every file glob g can
// (close enough: g read as a name, its wildcards as literal text).
func globCovers(pat, g string) bool {
	if pat == g {
		return true
	}
	ok, _ := path.Match(pat, g)
	return ok
}

// entryFor picks the source of a service: the journal when the service
// logs there, else its log files when they exist, else the journal when
// there is one (the service has not logged yet), else the files (a file
// source waits for them to appear).
func entryFor(s Service, inv Inventory) (Entry, bool) {
	journal := Entry{Services: []string{s.Name}, Source: acquire.KindJournal, Type: "syslog"}
	for _, id := range s.Journal {
		journal.JournalFilter = append(journal.JournalFilter, "SYSLOG_IDENTIFIER="+id)
	}
	file := Entry{Services: []string{s.Name}, Source: acquire.KindFile, Filenames: s.Logs, Type: s.FileType}
	seen, exist := false, false
	for _, id := range s.Journal {
		seen = seen || inv.Journal[id]
	}
	for _, g := range s.Logs {
		exist = exist || len(inv.Logs[g]) > 0
	}
	switch {
	case seen:
		return journal, true
	case exist:
		return file, true
	case inv.JournalOK && len(s.Journal) > 0:
		return journal, true
	case len(s.Logs) > 0:
		return file, true
	}
	return Entry{}, false
}

// addEntry adds e, merged into an entry that reads the same files with
// the same type (postfix and dovecot share mail.log): one reader per file.
func addEntry(es []Entry, e Entry, ev []string) []Entry {
	if e.Source == acquire.KindFile {
		for i := range es {
			if es[i].Source == e.Source && es[i].Type == e.Type && slices.Equal(es[i].Filenames, e.Filenames) {
				es[i].Services = append(es[i].Services, e.Services...)
				es[i].Name = "setup-" + strings.Join(es[i].Services, "-")
				es[i].Evidence = append(es[i].Evidence, ev...)
				return es
			}
		}
	}
	e.Name = "setup-" + strings.Join(e.Services, "-")
	e.Evidence = ev
	return append(es, e)
}

// addHub adds the collection of s, once.
func addHub(items []HubItem, s Service, opts PlanOptions) []HubItem {
	it := HubItem{Name: s.Collection, Services: []string{s.Name}}
	switch {
	case s.Collection != "" && len(opts.HubItems) > 0 && !slices.Contains(opts.HubItems, s.Collection):
		it.Action = HubNotInItems
	case s.Collection != "":
		it.Action = HubShipped
	case s.Hub == "":
		return items
	case opts.HubCollections == nil:
		it.Name, it.Action = s.Hub, HubNoSource
	case opts.HubCollections[s.Hub]:
		it.Name, it.Action = s.Hub, HubInstall
	default:
		it.Name, it.Action = s.Hub, HubNotInSource
	}
	for i := range items {
		if items[i].Name == it.Name {
			items[i].Services = append(items[i].Services, s.Name)
			return items
		}
	}
	return append(items, it)
}

// Installs are the collections to pass to moat hub install.
func (p Plan) Installs() []string {
	var out []string
	for _, it := range p.Hub {
		if it.Action == HubInstall {
			out = append(out, it.Name)
		}
	}
	return out
}
