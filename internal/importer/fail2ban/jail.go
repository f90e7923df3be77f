// Package fail2ban reads a fail2ban configuration (jail.conf, jail.d,
// jail.local, with fail2ban's includes and %(var)s interpolation) and its
// ban database, and translates them into moat configuration: hub items,
// acquisition, scenario overrides, allowlist, escalation and decisions,
// with a report of what has no equivalent.
package fail2ban

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// DefaultDir is where Debian installs fail2ban's configuration.
const DefaultDir = "/etc/fail2ban"

// ErrNoConfig is returned when dir holds no jail.conf nor jail.local.
var ErrNoConfig = errors.New("no fail2ban jail configuration")

// Jail is one jail after interpolation.
type Jail struct {
	Name    string
	Enabled bool
	// Filter is the filter's name without its [options].
	Filter   string
	Backend  string
	LogPaths []string
	// JournalMatch is the jail's journalmatch, when set in the jail.
	JournalMatch string
	IgnoreIP     []string
	// BanTime < 0 is a ban that never ends (bantime = -1).
	BanTime, FindTime time.Duration
	MaxRetry          int
	Increment         Increment
	// File and Line are where the jail was enabled (or declared).
	File string
	Line int
}

// Increment is bantime.increment and its tuning.
type Increment struct {
	Enabled bool
	Factor  float64
	MaxTime time.Duration
	// Multipliers, when set, replace the doubling formula.
	Multipliers []int
	// Formula is set when it is not fail2ban's default doubling.
	Formula string
}

// Config is the jails of a fail2ban configuration directory.
type Config struct {
	Dir   string
	Files []string
	Jails []Jail
}

// Load reads dir's jail configuration.
func Load(dir string) (*Config, error) {
	c := newINI()
	files, err := c.readSet(dir, "jail")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoConfig)
	}
	cfg := &Config{Dir: dir, Files: files}
	for _, name := range c.jails() {
		j, err := readJail(c, name)
		if err != nil {
			return nil, err
		}
		cfg.Jails = append(cfg.Jails, j)
	}
	return cfg, nil
}

// Enabled lists the enabled jails.
func (c *Config) Enabled() []Jail {
	var out []Jail
	for _, j := range c.Jails {
		if j.Enabled {
			out = append(out, j)
		}
	}
	return out
}

func readJail(c *ini, name string) (Jail, error) {
	j := Jail{Name: name}
	j.File, j.Line = c.Where(name, "enabled")
	get := func(key string) (string, error) {
		v, _, err := c.Get(name, key)
		return strings.TrimSpace(v), err
	}
	at := func(key string, err error) error {
		f, l := c.Where(name, key)
		return fmt.Errorf("%s:%d: [%s] %s: %w", f, l, name, key, err)
	}
	v, err := get("enabled")
	if err != nil {
		return j, err
	}
	if v != "" {
		if j.Enabled, err = parseBool(v); err != nil {
			return j, at("enabled", err)
		}
	}
	if v, err = get("filter"); err != nil {
		return j, err
	}
	j.Filter, _, _ = strings.Cut(v, "[")
	j.Filter = strings.TrimSpace(j.Filter)
	if j.Filter == "" {
		j.Filter = name
	}
	if j.Backend, err = get("backend"); err != nil {
		return j, err
	}
	if v, err = get("logpath"); err != nil {
		return j, err
	}
	for _, l := range strings.Split(v, "\n") {
		// "logpath = /var/log/x.log tail" names where to start; the
		// path is the first word.
		if f := strings.Fields(l); len(f) > 0 {
			j.LogPaths = append(j.LogPaths, f[0])
		}
	}
	if j.JournalMatch, err = get("journalmatch"); err != nil {
		return j, err
	}
	if v, err = get("ignoreip"); err != nil {
		return j, err
	}
	j.IgnoreIP = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	for _, d := range []struct {
		key string
		to  *time.Duration
	}{{"bantime", &j.BanTime}, {"findtime", &j.FindTime}} {
		v, err := get(d.key)
		if err != nil {
			return j, err
		}
		if v == "" {
			continue
		}
		if *d.to, err = ParseTime(v); err != nil {
			return j, at(d.key, err)
		}
	}
	if v, err = get("maxretry"); err != nil {
		return j, err
	}
	if v != "" {
		if j.MaxRetry, err = strconv.Atoi(v); err != nil {
			return j, at("maxretry", fmt.Errorf("want a number, got %q", v))
		}
	}
	if v, err = get("bantime.increment"); err != nil {
		return j, err
	}
	if v != "" {
		if j.Increment.Enabled, err = parseBool(v); err != nil {
			return j, at("bantime.increment", err)
		}
	}
	j.Increment.Factor = 1
	if v, _ = get("bantime.factor"); v != "" {
		if j.Increment.Factor, err = strconv.ParseFloat(v, 64); err != nil {
			return j, at("bantime.factor", fmt.Errorf("want a number, got %q", v))
		}
	}
	if v, _ = get("bantime.maxtime"); v != "" {
		if j.Increment.MaxTime, err = ParseTime(v); err != nil {
			return j, at("bantime.maxtime", err)
		}
	}
	if v, _ = get("bantime.multipliers"); v != "" {
		for _, f := range strings.Fields(v) {
			m, err := strconv.Atoi(f)
			if err != nil {
				return j, at("bantime.multipliers", fmt.Errorf("want numbers, got %q", f))
			}
			j.Increment.Multipliers = append(j.Increment.Multipliers, m)
		}
	}
	if v, _ = get("bantime.formula"); v != "" && !strings.Contains(v, "1<<") {
		j.Increment.Formula = v
	}
	return j, nil
}

// parseBool reads configparser's booleans.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, got %q", s)
}

// timeUnits are fail2ban's abbreviations (MyTime.str2seconds), longest
// first so that "mo" is not read as "m".
var timeUnits = []struct {
	names []string
	d     time.Duration
}{
	{[]string{"years", "year", "yy", "y"}, time.Duration(365.2425 * 24 * float64(time.Hour))},
	{[]string{"months", "month", "mo"}, time.Duration(365.2425 * 24 / 12 * float64(time.Hour))},
	{[]string{"weeks", "week", "ww", "w"}, 7 * 24 * time.Hour},
	{[]string{"days", "day", "dd", "d"}, 24 * time.Hour},
	{[]string{"hours", "hour", "hh", "h"}, time.Hour},
	{[]string{"minutes", "minute", "mins", "min", "mi", "mm", "m"}, time.Minute},
	{[]string{"seconds", "second", "secs", "sec", "ss", "s"}, time.Second},
}

// ParseTime reads a fail2ban time: seconds ("600"), units ("10m", "1h
// 30m", "1d"), or a negative number for forever (returned as -1).
func ParseTime(s string) (time.Duration, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return 0, fmt.Errorf("empty time")
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return -1, nil
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t+")
		if rest == "" {
			break
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("time %q: want a number before %q", s, rest)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("time %q: %w", s, err)
		}
		rest = strings.TrimLeft(rest[i:], " \t")
		unit := time.Second
		matched := false
		for _, u := range timeUnits {
			for _, name := range u.names {
				if strings.HasPrefix(rest, name) && (len(rest) == len(name) || !isLetter(rest[len(name)])) {
					unit, rest, matched = u.d, rest[len(name):], true
					break
				}
			}
			if matched {
				break
			}
		}
		if !matched && rest != "" && isLetter(rest[0]) {
			return 0, fmt.Errorf("time %q: unknown unit in %q", s, rest)
		}
		total += time.Duration(n * float64(unit))
	}
	return total, nil
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' }
