package fail2ban

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// setting is one definition of an option: later definitions (a .local
// over a .conf) come after earlier ones, which %(known/opt)s can still
// reach.
type setting struct {
	value string
	file  string
	line  int
}

// ini is fail2ban's configuration as its configparser sees it: sections in
// the order first met, each option keeping every definition in the order
// read.
type ini struct {
	sections map[string]map[string][]setting
	order    []string
	// seen guards against include loops.
	seen map[string]bool
}

func newINI() *ini {
	return &ini{sections: map[string]map[string][]setting{}, seen: map[string]bool{}}
}

const defaultSection = "DEFAULT"

// readSet reads name.conf, name.d/*.conf, name.local and name.d/*.local
// from dir, in fail2ban's order, each with its [INCLUDES].
func (c *ini) readSet(dir, name string) ([]string, error) {
	var files []string
	files = append(files, filepath.Join(dir, name+".conf"))
	confs, _ := filepath.Glob(filepath.Join(dir, name+".d", "*.conf"))
	sort.Strings(confs)
	files = append(files, confs...)
	files = append(files, filepath.Join(dir, name+".local"))
	locals, _ := filepath.Glob(filepath.Join(dir, name+".d", "*.local"))
	sort.Strings(locals)
	files = append(files, locals...)
	var read []string
	for _, f := range files {
		ok, err := c.readFile(f)
		if err != nil {
			return read, err
		}
		if ok {
			read = append(read, f)
		}
	}
	return read, nil
}

var sectionRE = regexp.MustCompile(`^\[([^\]]+)\]\s*$`)

// readFile reads one file and its includes: "before" files first, then
// the file, then "after" files. A missing file is not an error, as in
// fail2ban (jail.local is optional).
func (c *ini) readFile(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fail2ban: %w", err)
	}
	abs, _ := filepath.Abs(path)
	if c.seen[abs] {
		return true, nil
	}
	c.seen[abs] = true
	parsed, err := parseINI(path, data)
	if err != nil {
		return false, err
	}
	inc := parsed.sections["INCLUDES"]
	includes := func(key string) error {
		for _, s := range inc[key] {
			for _, f := range strings.Fields(s.value) {
				if !filepath.IsAbs(f) {
					f = filepath.Join(filepath.Dir(path), f)
				}
				// fail2ban reads an include's own .local beside it.
				for _, g := range []string{f, strings.TrimSuffix(f, ".conf") + ".local"} {
					if _, err := c.readFile(g); err != nil {
						return err
					}
					if !strings.HasSuffix(f, ".conf") {
						break
					}
				}
			}
		}
		return nil
	}
	if err := includes("before"); err != nil {
		return false, err
	}
	for _, name := range parsed.order {
		if name == "INCLUDES" {
			continue
		}
		for key, defs := range parsed.sections[name] {
			c.add(name, key, defs...)
		}
	}
	if err := includes("after"); err != nil {
		return false, err
	}
	return true, nil
}

func (c *ini) add(section, key string, defs ...setting) {
	sec, ok := c.sections[section]
	if !ok {
		sec = map[string][]setting{}
		c.sections[section] = sec
		c.order = append(c.order, section)
	}
	sec[key] = append(sec[key], defs...)
}

// parseINI reads Python configparser syntax as fail2ban configures it:
// "key = value" or "key: value", values continued on indented lines,
// whole-line comments with # or ;, inline comments after " ;". Keys are
// kept as written but for case, which configparser folds.
func parseINI(path string, data []byte) (*ini, error) {
	c := newINI()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	section, key := "", ""
	for n := 1; sc.Scan(); n++ {
		raw := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			// A blank line inside a value keeps the value going in
			// configparser, but fail2ban's files never rely on it.
			if trimmed == "" {
				key = ""
			}
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if key == "" {
				return nil, fmt.Errorf("%s:%d: indented line continues no option", path, n)
			}
			defs := c.sections[section][key]
			defs[len(defs)-1].value += "\n" + stripInline(trimmed)
			continue
		}
		if m := sectionRE.FindStringSubmatch(trimmed); m != nil {
			section, key = m[1], ""
			if _, ok := c.sections[section]; !ok {
				c.sections[section] = map[string][]setting{}
				c.order = append(c.order, section)
			}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: option before any [section]", path, n)
		}
		i := strings.IndexAny(trimmed, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: want key = value, got %q", path, n, trimmed)
		}
		key = strings.ToLower(strings.TrimSpace(trimmed[:i]))
		value := stripInline(strings.TrimSpace(trimmed[i+1:]))
		// Within one file a repeated key replaces the earlier one.
		c.sections[section][key] = []setting{{value: value, file: path, line: n}}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// stripInline drops a "; comment" that follows whitespace.
func stripInline(s string) string {
	for i := 1; i < len(s); i++ {
		if s[i] == ';' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

// sectionsExcept lists the sections in the order first read, without
// DEFAULT and INCLUDES.
func (c *ini) jails() []string {
	var out []string
	for _, s := range c.order {
		if s != defaultSection && s != "INCLUDES" && s != "Definition" && s != "Init" {
			out = append(out, s)
		}
	}
	return out
}

// lookup finds the definitions of key in section, else in DEFAULT.
func (c *ini) lookup(section, key string) []setting {
	if defs := c.sections[section][key]; len(defs) > 0 {
		return defs
	}
	return c.sections[defaultSection][key]
}

// Get returns key of section interpolated as fail2ban does, and whether it
// is set at all.
func (c *ini) Get(section, key string) (string, bool, error) {
	defs := c.lookup(section, key)
	if len(defs) == 0 {
		return "", false, nil
	}
	v, err := c.interpolate(section, key, len(defs)-1, defs[len(defs)-1].value, 0)
	if err != nil {
		d := defs[len(defs)-1]
		return "", true, fmt.Errorf("%s:%d: [%s] %s: %w", d.file, d.line, section, key, err)
	}
	return v, true, nil
}

// Where is the file and line of the definition Get uses.
func (c *ini) Where(section, key string) (string, int) {
	defs := c.lookup(section, key)
	if len(defs) == 0 {
		return "", 0
	}
	d := defs[len(defs)-1]
	return d.file, d.line
}

var refRE = regexp.MustCompile(`%\(([^)]+)\)s`)

// interpolate expands %(opt)s from the section then DEFAULT,
// %(known/opt)s from the definition before this one, %(default/opt)s from
// DEFAULT and %(sec/opt)s from another section; %(__name__)s is the
// section's name, and %% is a percent sign.
func (c *ini) interpolate(section, key string, idx int, value string, depth int) (string, error) {
	if depth > 20 {
		return "", fmt.Errorf("interpolation deeper than 20 levels in %q", value)
	}
	var firstErr error
	out := refRE.ReplaceAllStringFunc(value, func(ref string) string {
		name := strings.ToLower(refRE.FindStringSubmatch(ref)[1])
		if name == "__name__" {
			return section
		}
		sec := section
		var defs []setting
		at := -1
		if prefix, opt, ok := strings.Cut(name, "/"); ok {
			switch prefix {
			case "known":
				if opt == key && idx > 0 {
					defs, at = c.lookup(section, key), idx-1
				} else if opt != key {
					defs = c.lookup(section, opt)
				} else {
					// The first definition of a key knows of none
					// before it in the section: DEFAULT's, if any.
					defs, sec = c.sections[defaultSection][opt], defaultSection
				}
			case "default":
				defs, sec = c.sections[defaultSection][opt], defaultSection
			default:
				sec = prefix
				if sec == "default" {
					sec = defaultSection
				}
				defs = c.lookup(sec, opt)
			}
			name = opt
		} else {
			defs = c.lookup(section, name)
			if name == key {
				// A self reference in a section reaches DEFAULT.
				defs, sec = c.sections[defaultSection][name], defaultSection
			}
		}
		if len(defs) == 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s names option %q, which is not set", ref, name)
			}
			return ""
		}
		if at < 0 {
			at = len(defs) - 1
		}
		v, err := c.interpolate(sec, name, at, defs[at].value, depth+1)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	})
	if firstErr != nil {
		return "", firstErr
	}
	return strings.ReplaceAll(out, "%%", "%"), nil
}
