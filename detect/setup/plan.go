package setup

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/moatsec/moat/detect/acquire"
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
	HubShipped     = "shipped"              // part of moat's content, loaded
	HubInstalled   = "installed"            // the hub collection is loaded already
	HubNotInItems  = "shipped-not-in-items" // loaded, but hub.items leaves it out
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
	ReadBy string `json:"read_by,omitempty"`
	// Source is the kind of source that reads it (planned or existing).
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
	Note     string   `json:"note,omitempty"`
}

// PlanOptions are the inputs of a plan besides what was found.
type PlanOptions struct {
	Existing Existing
	// HubItems is hub.items: when not empty, only these run.
	HubItems []string
	// Loaded are the collections the engine's hub layers hold (shipped,
	// installed and local), as "author/name".
	Loaded map[string]bool
	// HubCollections are the collections the hub source offers; nil when
	// there is no hub source.
	HubCollections map[string]bool
}

// BuildPlan decides, for every service found, what reads its log and
// which collection parses it. It never plans a second reader of a log
// that an acquisition entry reads already: every line would count twice
// and ban at half the threshold.
func BuildPlan(services []Service, inv Inventory, opts PlanOptions) Plan {
	p := Plan{Notes: slices.Clone(inv.Notes), Acquisition: []Entry{}, Hub: []HubItem{}, Services: []PlannedService{}}
	var found []Service
	readers := map[string]reader{}
	for _, s := range services {
		ev := inv.Evidence(s)
		if len(ev) == 0 {
			continue
		}
		found = append(found, s)
		ps := PlannedService{Name: s.Name, Evidence: ev}
		if r, ok := readBy(opts.Existing.Configs, s, inv); ok {
			readers[s.Name] = r
			ps.Status, ps.ReadBy, ps.Source = StatusConfigured, r.where, r.source
			if r.source == acquire.KindFile && !r.catchAll {
				for _, f := range unread(opts.Existing.Configs, s, inv) {
					p.Notes = append(p.Notes, fmt.Sprintf("%s: %s is read by no acquisition entry (%s reads other files of it)", s.Name, f, r.where))
				}
			}
		}
		var hi HubItem
		p.Hub, hi = addHub(p.Hub, s, opts)
		ps.Collection = hi.Name
		p.Services = append(p.Services, ps)
	}
	taken := map[string]bool{}
	for _, c := range opts.Existing.Configs {
		taken[c.Name] = true
	}
	for _, g := range shareLogs(found) {
		for _, pick := range pickSources(g, inv, readers) {
			ps := &p.Services[slices.IndexFunc(p.Services, func(ps PlannedService) bool { return ps.Name == pick.service.Name })]
			if pick.note != "" {
				p.Notes = append(p.Notes, pick.note)
			}
			if pick.entry == nil {
				ps.Status = StatusNoSource
				continue
			}
			ps.Status, ps.Source = StatusAdd, pick.entry.Source
			p.Acquisition = addEntry(p.Acquisition, *pick.entry, ps.Evidence, taken)
		}
	}
	// Only a plan that writes creates the directory and carries files.
	if len(p.Acquisition) > 0 {
		for n := range opts.Existing.Carry {
			p.Carry = append(p.Carry, n)
		}
		sort.Strings(p.Carry)
	}
	return p
}

// shareLogs groups the services found by the log files they share
// (postfix and dovecot both write mail.log), in catalog order: the
// members of a group are read the same way, or a file reader would read
// again the lines of a member the journal reader reads.
func shareLogs(found []Service) [][]Service {
	group := make([]int, len(found))
	for i := range found {
		group[i] = i
		for j := range i {
			if group[j] == group[i] || !slices.ContainsFunc(found[i].Logs, func(g string) bool { return slices.Contains(found[j].Logs, g) }) {
				continue
			}
			// i joins j's group, and so does every group i joined
			// before: sharing is transitive.
			old := group[i]
			for k := range i + 1 {
				if group[k] == old {
					group[k] = group[j]
				}
			}
		}
	}
	var out [][]Service
	index := map[int]int{}
	for i, s := range found {
		k, ok := index[group[i]]
		if !ok {
			k = len(out)
			index[group[i]] = k
			out = append(out, nil)
		}
		out[k] = append(out[k], s)
	}
	return out
}

// pick is the source chosen for one service; entry nil means none.
type pick struct {
	service Service
	entry   *Entry
	note    string
}

// pickSources chooses the source of each service of a group that nothing
// reads yet: the journal when a member logs there (or is read from it
// already), else the log files when they exist, else the journal when
// there is one (the services have not logged yet), else the files (a
// file source waits for them to appear).
func pickSources(g []Service, inv Inventory, readers map[string]reader) []pick {
	var todo []Service
	viaJournal, filesExist, allJournal := false, false, true
	for _, s := range g {
		for _, id := range s.Journal {
			viaJournal = viaJournal || inv.Journal[id]
		}
		for _, l := range s.Logs {
			filesExist = filesExist || len(inv.Logs[l]) > 0
		}
		if r, ok := readers[s.Name]; ok {
			viaJournal = viaJournal || r.source == acquire.KindJournal
			continue
		}
		allJournal = allJournal && len(s.Journal) > 0
		todo = append(todo, s)
	}
	if !viaJournal && !filesExist && inv.JournalOK && allJournal {
		viaJournal = true
	}
	out := make([]pick, 0, len(todo))
	for _, s := range todo {
		pk := pick{service: s}
		switch {
		case viaJournal && len(s.Journal) > 0:
			e := Entry{Services: []string{s.Name}, Source: acquire.KindJournal, Type: "syslog"}
			for _, id := range s.Journal {
				e.JournalFilter = append(e.JournalFilter, "SYSLOG_IDENTIFIER="+id)
			}
			pk.entry = &e
		case viaJournal && len(s.Logs) > 0:
			pk.note = fmt.Sprintf("%s: not read: it has no journal identifier, and its log %s holds lines of %s read from the journal, which a file reader would count twice",
				s.Name, strings.Join(s.Logs, ", "), strings.Join(others(g, s), ", "))
		case len(s.Logs) > 0:
			pk.entry = &Entry{Services: []string{s.Name}, Source: acquire.KindFile, Filenames: s.Logs, Type: s.FileType}
		default:
			pk.note = fmt.Sprintf("%s: no log to read: it logs only to the journal, which could not be read", s.Name)
		}
		out = append(out, pk)
	}
	return out
}

func others(g []Service, s Service) []string {
	var out []string
	for _, o := range g {
		if o.Name != s.Name {
			out = append(out, o.Name)
		}
	}
	return out
}

// addEntry adds e, merged into an entry that reads one of the same files
// with the same type (postfix and dovecot share mail.log): one reader per
// file, or each line would be read twice. Names are unique across the
// acquisition directory, as the daemon requires.
func addEntry(es []Entry, e Entry, ev []string, taken map[string]bool) []Entry {
	e.Evidence = slices.Clone(ev)
	at := len(es)
	if e.Source == acquire.KindFile {
		// e may overlap several entries (one per file it shares): all of
		// them become one, where the first of them was.
		kept := es[:0:0]
		var m Entry // the merged ones, in order
		for _, o := range es {
			if o.Source != e.Source || o.Type != e.Type || !slices.ContainsFunc(e.Filenames, func(f string) bool { return slices.Contains(o.Filenames, f) }) {
				kept = append(kept, o)
				continue
			}
			at = min(at, len(kept))
			delete(taken, o.Name)
			m.Services = slices.Concat(m.Services, o.Services)
			m.Filenames = union(m.Filenames, o.Filenames)
			m.Evidence = union(m.Evidence, o.Evidence)
		}
		e.Services = slices.Concat(m.Services, e.Services)
		e.Filenames = union(m.Filenames, e.Filenames)
		e.Evidence = union(m.Evidence, e.Evidence)
		es = kept
	}
	e.Name = uniqueName("setup-"+strings.Join(e.Services, "-"), taken)
	return slices.Insert(es, at, e)
}

// union appends to a the elements of b it lacks.
func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

func uniqueName(base string, taken map[string]bool) string {
	n := base
	for i := 2; taken[n]; i++ {
		n = fmt.Sprintf("%s-%d", base, i)
	}
	taken[n] = true
	return n
}

// enabled reports whether hub.items lets a collection run. Items naming a
// collection that includes it are not followed: the plan says so, and
// the admin knows which of their own collections pull it in.
func enabled(items []string, name string) bool {
	return len(items) == 0 || slices.Contains(items, name) || slices.Contains(items, "collections/"+name)
}

// addHub adds the collection of s, once, and returns it.
func addHub(items []HubItem, s Service, opts PlanOptions) ([]HubItem, HubItem) {
	it := HubItem{Name: s.Collection, Services: []string{s.Name}}
	switch {
	case s.Collection != "" && opts.Loaded[s.Collection]:
		it.Action = HubShipped
	case s.Hub == "":
		return items, HubItem{}
	case opts.Loaded[s.Hub]:
		it.Name, it.Action = s.Hub, HubInstalled
	case opts.HubCollections == nil:
		it.Name, it.Action = s.Hub, HubNoSource
	case opts.HubCollections[s.Hub]:
		it.Name, it.Action = s.Hub, HubInstall
		if !enabled(opts.HubItems, s.Hub) {
			it.Note = "hub.items is set: add " + s.Hub + " to it, or it is installed but not run"
		}
	default:
		it.Name, it.Action = s.Hub, HubNotInSource
	}
	if (it.Action == HubShipped || it.Action == HubInstalled) && !enabled(opts.HubItems, it.Name) {
		it.Action = HubNotInItems
		it.Note = "add " + it.Name + " to hub.items to run it"
	}
	for i := range items {
		if items[i].Name == it.Name {
			items[i].Services = append(items[i].Services, s.Name)
			return items, items[i]
		}
	}
	return append(items, it), it
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
