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

// FallbackLabel prefixes the names of the fallback's files in messages
// and in PlannedService.ReadBy.
const FallbackLabel = "shipped acquis.d/"

// Existing is the acquisition the daemon reads today.
type Existing struct {
	Configs []acquire.Config
	// Carry holds the fallback's files, by name, when the directory is
	// missing and the daemon reads the fallback instead.
	Carry map[string][]byte
	// Own says whether the directory holds setup's own file already.
	Own bool
}

// acquisFile reports whether the daemon reads a file of that name, as
// acquire.LoadConfigDir chooses them.
func acquisFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
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
		if e.IsDir() || !acquisFile(n) {
			continue
		}
		if n == OwnFile {
			ex.Own = true
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
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return Existing{}, fmt.Errorf("built-in acquisition: %w", err)
	}
	ex := Existing{Carry: map[string][]byte{}}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !acquisFile(n) || n == OwnFile {
			continue
		}
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return Existing{}, fmt.Errorf("built-in acquisition %s: %w", n, err)
		}
		// The label says where the entry is, since no path does.
		cs, err := acquire.LoadConfig(FallbackLabel+n, data)
		if err != nil {
			return Existing{}, err
		}
		ex.Configs = append(ex.Configs, cs...)
		ex.Carry[n] = data
	}
	return ex, nil
}

// catchAll are the files rsyslog fills from every facility but auth on
// Debian (syslog) and on other families (messages).
var catchAll = []string{"/var/log/syslog", "/var/log/messages"}

// reader is an existing entry that reads a service's log.
type reader struct {
	where  string // file:line
	source string // acquire.KindFile or acquire.KindJournal
	// catchAll: a file that holds every syslog line, not the service's own.
	catchAll bool
}

// readBy finds an existing entry that reads the service's log: a journal
// filter on one of its identifiers or units (or no filter: the whole
// journal), or a file pattern that covers one of its globs or files (or a
// catch-all syslog file, for a service that logs through syslog). A
// one-shot (cat) entry or another host's journal directory reads nothing
// live, so it does not count.
func readBy(cs []acquire.Config, s Service, inv Inventory) (reader, bool) {
	for i := range cs {
		c := &cs[i]
		if c.Mode == "cat" {
			continue
		}
		switch c.Source {
		case acquire.KindJournal:
			if c.JournalDir == "" && journalCovers(c.JournalctlFilter, s) {
				return reader{where: c.Where(), source: c.Source}, true
			}
		case acquire.KindFile:
			if ok, all := fileCovers(c.Patterns(), s, inv); ok {
				return reader{c.Where(), c.Source, all}, true
			}
		}
	}
	return reader{}, false
}

func journalCovers(filter []string, s Service) bool {
	if len(s.Journal) == 0 {
		return false
	}
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		field, value, _ := strings.Cut(f, "=")
		switch field {
		case "SYSLOG_IDENTIFIER":
			if slices.Contains(s.Journal, value) {
				return true
			}
		case "_SYSTEMD_UNIT":
			if slices.Contains(s.Units, value) {
				return true
			}
		}
	}
	return false
}

// fileCovers reports whether the patterns read s's lines, and whether
// they do so through a catch-all file.
func fileCovers(patterns []string, s Service, inv Inventory) (covers, catchAllFile bool) {
	for _, pat := range patterns {
		for _, g := range s.Logs {
			if globCovers(pat, g) {
				return true, false
			}
			for _, f := range inv.Logs[g] {
				if ok, _ := path.Match(pat, f); ok {
					return true, false
				}
			}
		}
		// sshd logs to the auth facility, which Debian keeps out of
		// the catch-all file; every other syslog user lands there.
		if len(s.Journal) > 0 && !slices.Contains(s.Logs, "/var/log/auth.log") {
			for _, f := range catchAll {
				if ok, _ := path.Match(pat, f); ok {
					return true, true
				}
			}
		}
	}
	return false, false
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

// unread lists the files of s's globs that no existing file entry reads:
// a service counted as read may still have a file (a second site's access
// log) that nothing reads.
func unread(cs []acquire.Config, s Service, inv Inventory) []string {
	var out []string
	for _, g := range s.Logs {
		for _, f := range inv.Logs[g] {
			read := false
			for i := range cs {
				if cs[i].Source != acquire.KindFile || cs[i].Mode == "cat" {
					continue
				}
				for _, pat := range cs[i].Patterns() {
					if ok, _ := path.Match(pat, f); ok {
						read = true
					}
				}
			}
			if !read {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
