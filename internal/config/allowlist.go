package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// AllowlistValues is the allowlist: key. Each item is a string (an
// address, a range, a hostname, or a country:CC or as:N entry, which needs
// the geoip: database) or a mapping {value, comment, expires}.
// Only the values live here, so code and tests that set the allowlist as
// a []string keep working; comments, expiries and lines are read back
// from the parsed document by AllowlistEntries.
type AllowlistValues []string

// UnmarshalYAML takes the value of each item. The mapping's keys are
// checked by validateAllowlist, against the document: yaml.v3 forgets
// KnownFields inside a custom unmarshaler, so strictness is done by hand.
func (v *AllowlistValues) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		if n.Tag == "!!null" {
			*v = nil
			return nil
		}
		return lineError(n.Line, "allowlist: want a list of addresses, ranges or hostnames")
	}
	out := make(AllowlistValues, 0, len(n.Content))
	for _, item := range n.Content {
		switch item.Kind {
		case yaml.ScalarNode:
			out = append(out, item.Value)
		case yaml.MappingNode:
			s := ""
			if val := mapValue(item, "value"); val != nil {
				s = val.Value
			}
			out = append(out, s)
		default:
			return lineError(item.Line, "allowlist entry: want a value or a mapping {value, comment, expires}")
		}
	}
	*v = out
	return nil
}

// lineError is an error yamlerr.Wrap places at a line of the file.
func lineError(line int, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", line, msg)}}
}

// AllowlistOptions tunes the entries that change at run time.
type AllowlistOptions struct {
	// Resolver is the DNS server (host:port) hostnames are resolved with;
	// "" is the system's, from /etc/resolv.conf.
	Resolver string `yaml:"resolver"`
	// ProtectSessions keeps addresses with a live login session on this
	// host from being banned.
	ProtectSessions bool `yaml:"protect_sessions"`
	// UTMP is where login sessions are read from.
	UTMP string `yaml:"utmp"`
	// FileCheck is how often allowlist_files and utmp are looked at for
	// changes.
	FileCheck time.Duration `yaml:"file_check"`
}

func defaultAllowlistOptions() AllowlistOptions {
	return AllowlistOptions{ProtectSessions: true, UTMP: "/run/utmp", FileCheck: 2 * time.Second}
}

// AllowlistEntry is one allowlist: item with where it was written.
type AllowlistEntry struct {
	// Value is an address, a range or a hostname, as written.
	Value   string
	Comment string
	// Expires is zero for an entry that never expires.
	Expires time.Time
	File    string
	Line    int
}

// AllowlistEntries returns the allowlist with comments, expiries and the
// file and line of each entry; Parse has validated it.
func (c *Config) AllowlistEntries() []AllowlistEntry {
	var seq *yaml.Node
	if c.root != nil && len(c.root.Content) > 0 {
		seq = mapValue(c.root.Content[0], "allowlist")
	}
	out := make([]AllowlistEntry, 0, len(c.Allowlist))
	for i, v := range c.Allowlist {
		e := AllowlistEntry{Value: strings.TrimSpace(v), File: c.Source}
		if seq != nil && seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
			item := seq.Content[i]
			e.Line = item.Line
			if item.Kind == yaml.MappingNode {
				if n := mapValue(item, "comment"); n != nil {
					e.Comment = n.Value
				}
				if n := mapValue(item, "expires"); n != nil {
					e.Expires, _ = ParseExpiry(n.Value)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// AllowlistPrefixes returns the addresses and ranges of the allowlist that
// never expire; hostnames and expiring entries change at run time and are
// kept by the daemon's dynamic allowlist instead.
func (c *Config) AllowlistPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Allowlist))
	for _, e := range c.AllowlistEntries() {
		if !e.Expires.IsZero() {
			continue
		}
		if p, err := ParsePrefix(e.Value); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParseExpiry reads an expiry: an RFC 3339 time or a date (midnight UTC).
func ParseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("expires %s: want an RFC 3339 time (2027-01-01T00:00:00Z) or a date (2027-01-01)", yamlerr.Excerpt(s))
	}
	return t, nil
}

// IsHostname reports whether s is a DNS name moat resolves: dot-separated
// labels of letters, digits and hyphens, the last one not numeric (so a
// mistyped address is not taken for a name).
func IsHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// validateAllowlist checks the allowlist: items, their mapping keys, and
// allowlist_files.
func (c *Config) validateAllowlist(root *yaml.Node, bad func(msg string, keys ...any) error) error {
	q := yamlerr.Excerpt
	var seq *yaml.Node
	if len(root.Content) > 0 {
		seq = mapValue(root.Content[0], "allowlist")
	}
	for i, s := range c.Allowlist {
		if seq != nil && seq.Kind == yaml.SequenceNode && i < len(seq.Content) && seq.Content[i].Kind == yaml.MappingNode {
			if err := checkAllowMapping(seq.Content[i]); err != nil {
				return bad(err.Error(), "allowlist", i)
			}
		}
		if IsHostname(s) {
			continue
		}
		if _, ok, err := model.ParseGeoEntry(s); ok {
			if err != nil {
				return bad(fmt.Sprintf("allowlist entry %s: %v", q(s), err), "allowlist", i)
			}
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return bad(fmt.Sprintf("allowlist entry %s: want an IP address or CIDR range%s", q(s), detail(s, err)), "allowlist", i)
		}
		if err := model.CheckAllowWidth(p); err != nil && !c.AllowlistAllowWide {
			return bad(fmt.Sprintf("allowlist entry %s: %v; set allowlist_allow_wide: true to accept it", q(s), err), "allowlist", i)
		}
	}
	for i, g := range c.AllowlistFiles {
		if !filepath.IsAbs(g) {
			return bad(fmt.Sprintf("allowlist_files %s: want an absolute path or pattern", q(g)), "allowlist_files", i)
		}
		if _, err := filepath.Match(g, ""); err != nil {
			return bad(fmt.Sprintf("allowlist_files %s: %v", q(g), err), "allowlist_files", i)
		}
	}
	o := c.AllowlistOptions
	if o.Resolver != "" {
		if _, err := netip.ParseAddrPort(o.Resolver); err != nil {
			return bad(fmt.Sprintf("allowlist_options resolver %s: want address:port%s", short(o.Resolver), detail(o.Resolver, err)), "allowlist_options", "resolver")
		}
	}
	if o.FileCheck < 100*time.Millisecond {
		return bad(fmt.Sprintf("allowlist_options file_check %s: want at least 100ms", o.FileCheck), "allowlist_options", "file_check")
	}
	if o.ProtectSessions && o.UTMP == "" {
		return bad("allowlist_options utmp must not be empty while protect_sessions is on", "allowlist_options", "utmp")
	}
	return nil
}

// checkAllowMapping checks one {value, comment, expires} item.
func checkAllowMapping(n *yaml.Node) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch k {
		case "value", "comment", "expires":
		default:
			return fmt.Errorf("allowlist entry: unknown key %s (want value, comment, expires)", yamlerr.Excerpt(k))
		}
		if seen[k] {
			return fmt.Errorf("allowlist entry: key %s given twice", k)
		}
		seen[k] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("allowlist entry: %s must be a single value", k)
		}
		if k == "expires" {
			if _, err := ParseExpiry(v.Value); err != nil {
				return fmt.Errorf("allowlist entry: %w", err)
			}
		}
	}
	if !seen["value"] {
		return fmt.Errorf("allowlist entry: a mapping needs value: (an address, range or hostname)")
	}
	return nil
}

// mapValue is the value node of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
