package setup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// unitDirs are where systemd unit files live, highest precedence first.
var unitDirs = [...]string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// Journal answers which identifiers logged to the journal since a time.
type Journal interface {
	Seen(ids []string, since time.Time) (map[string]bool, error)
	Close() error
}

// Inventory is what was found on the host.
type Inventory struct {
	Packages map[string]bool
	Units    map[string]bool
	// Logs maps each catalog glob to the files it matched (host paths).
	Logs map[string][]string
	// Journal is the identifiers seen recently; JournalOK says whether a
	// journal could be read at all.
	Journal   map[string]bool
	JournalOK bool
	// Notes say what could not be looked at, and why.
	Notes []string
}

// DetectOptions says where to look.
type DetectOptions struct {
	// Root is the host's root directory: "/" for this host, a directory
	// holding a host's tree in tests.
	Root string
	// Journal is read for identifiers; nil means none.
	Journal Journal
	// Since is how far back an identifier counts as seen.
	Since time.Time
}

// Detect looks for the evidence of every catalog service under opts.Root.
func Detect(services []Service, opts DetectOptions) (Inventory, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	inv := Inventory{Units: map[string]bool{}, Logs: map[string][]string{}, Journal: map[string]bool{}}
	var err error
	if inv.Packages, err = dpkgInstalled(filepath.Join(root, "var/lib/dpkg/status")); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return Inventory{}, err
		}
		inv.Notes = append(inv.Notes, "no dpkg status: packages not checked")
	}
	// Only the catalog's units are worth a note when masked: a host
	// masks a few of its own (hwclock, rcS) that say nothing here.
	named := map[string]bool{}
	for _, s := range services {
		for _, u := range s.Units {
			named[u] = true
		}
	}
	seenUnit := map[string]bool{}
	for _, d := range unitDirs {
		ents, err := os.ReadDir(filepath.Join(root, d))
		if err != nil {
			continue // a directory a distribution does not have
		}
		for _, e := range ents {
			// The first directory holding a name decides: a mask in
			// /etc hides the unit a package ships in /lib.
			if seenUnit[e.Name()] {
				continue
			}
			seenUnit[e.Name()] = true
			switch unitState(root, path.Join(d, e.Name())) {
			case unitOK:
				inv.Units[e.Name()] = true
			case unitMasked:
				if !named[e.Name()] {
					continue
				}
				inv.Notes = append(inv.Notes, fmt.Sprintf("unit %s is masked: not taken as evidence", e.Name()))
			}
		}
	}
	var ids []string
	for _, s := range services {
		for _, g := range s.Logs {
			if _, done := inv.Logs[g]; done {
				continue
			}
			// The root is taken literally: a [ or * in a test's temporary
			// directory must not turn into a pattern.
			matches, err := filepath.Glob(filepath.Join(escapeGlob(root), g))
			if err != nil {
				return Inventory{}, fmt.Errorf("service %s: log glob %q: %w", s.Name, g, err)
			}
			var found []string
			for _, m := range matches {
				if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
					rel, _ := filepath.Rel(root, m)
					found = append(found, "/"+filepath.ToSlash(rel))
				}
			}
			sort.Strings(found)
			inv.Logs[g] = found
		}
		ids = append(ids, s.Journal...)
	}
	if opts.Journal != nil {
		seen, err := opts.Journal.Seen(ids, opts.Since)
		if err != nil {
			inv.Notes = append(inv.Notes, fmt.Sprintf("journal not read, so log files are preferred: %v", err))
		} else {
			inv.Journal, inv.JournalOK = seen, true
		}
	}
	return inv, nil
}

// Unit file states.
const (
	unitMissing = iota // dangling: an alias a removed package left behind
	unitOK
	unitMasked // a symlink to /dev/null: systemd will not start it
)

// unitState follows a unit file's symlinks inside root (an absolute
// target names a path of the host at root, not of this machine).
func unitState(root, p string) int {
	for range 16 {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			return unitMissing
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if fi.Mode().IsRegular() {
				return unitOK
			}
			return unitMissing // a drop-in or .wants directory
		}
		target, err := os.Readlink(full)
		if err != nil {
			return unitMissing
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		if path.Clean(target) == "/dev/null" {
			return unitMasked
		}
		p = target
	}
	return unitMissing // a symlink loop
}

// escapeGlob quotes the glob metacharacters of s.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dpkgInstalled reads a dpkg status file and returns the installed
// packages (Status "... installed"; removed ones keep their stanza with
// "deinstall ok config-files").
func dpkgInstalled(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dpkg status: %w", err)
	}
	defer f.Close()
	out := map[string]bool{}
	var pkg, status string
	flush := func() {
		if pkg != "" && strings.HasSuffix(status, " installed") {
			out[pkg] = true
		}
		pkg, status = "", ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // Description lines can be long
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			flush()
		case strings.HasPrefix(l, "Package:"):
			pkg = strings.TrimSpace(strings.TrimPrefix(l, "Package:"))
		case strings.HasPrefix(l, "Status:"):
			status = strings.TrimSpace(strings.TrimPrefix(l, "Status:"))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dpkg status %s: %w", path, err)
	}
	flush()
	return out, nil
}

// Evidence lists why a service is taken to be on the host; none means it
// is not.
func (inv Inventory) Evidence(s Service) []string {
	var ev []string
	for _, p := range s.Packages {
		if inv.Packages[p] {
			ev = append(ev, "package "+p)
		}
	}
	for _, u := range s.Units {
		if inv.Units[u] {
			ev = append(ev, "unit "+u)
		}
	}
	for _, id := range s.Journal {
		if inv.Journal[id] {
			ev = append(ev, "journal "+id)
		}
	}
	// A log file alone is weak evidence (mail.log exists for any MTA), so
	// it only counts beside another sign.
	if len(ev) > 0 {
		for _, g := range s.Logs {
			for _, f := range inv.Logs[g] {
				ev = append(ev, "log "+f)
			}
		}
	}
	return ev
}
