package allowlist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// Where an entry comes from.
const (
	SourceConfig  = "config"
	SourceFile    = "file"
	SourceRuntime = "runtime"
	SourceSession = "session"
)

// ErrProtected is wrapped by every ban Protect refuses.
var ErrProtected = errors.New("allowlisted")

// Entry is one allowlist entry.
type Entry struct {
	// Value is an address, a range or a hostname, as written.
	Value   string `json:"value"`
	Comment string `json:"comment,omitempty"`
	// Expires is zero for an entry that never expires.
	Expires time.Time `json:"expires,omitzero"`
	Source  string    `json:"source"`
	// File and Line say where a config or include file entry was
	// written; for a session, File is the utmp file.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

// Where is the entry's origin as people read it: file:line, or the source.
func (e Entry) Where() string {
	switch {
	case e.File != "" && e.Line > 0:
		return e.File + ":" + strconv.Itoa(e.Line)
	case e.File != "":
		return e.Source + " (" + e.File + ")"
	}
	return e.Source
}

// live reports whether the entry has not expired at now.
func (e Entry) live(now time.Time) bool {
	return e.Expires.IsZero() || now.Before(e.Expires)
}

// Match is an entry that protects an address, with the range it protects:
// the entry's own, or an address its hostname resolved to.
type Match struct {
	Entry
	Prefix netip.Prefix `json:"prefix"`
}

// ProtectedError says which entry refused a ban.
type ProtectedError struct {
	Prefix netip.Prefix
	Match  Match
}

func (e *ProtectedError) Error() string {
	m := e.Match
	if m.Source == SourceSession {
		return fmt.Sprintf("%s has a login session on this host (%s)", m.Prefix, m.Comment)
	}
	what := m.Value
	if m.Value != model.ValueString(m.Prefix) {
		what += " (" + model.ValueString(m.Prefix) + ")"
	}
	return fmt.Sprintf("%s is allowlisted by %s, %s", e.Prefix, what, m.Where())
}

func (e *ProtectedError) Is(target error) bool { return target == ErrProtected }

// parseValue checks an entry's value: an address or range (returned), a
// hostname (host set), or a country:CC or as:N entry (geo set), which
// protects the networks the GeoIP database assigns to it.
func parseValue(s string, wide bool) (p netip.Prefix, host string, geo model.Geo, err error) {
	if config.IsHostname(s) {
		return netip.Prefix{}, strings.ToLower(strings.TrimSuffix(s, ".")), model.Geo{}, nil
	}
	if g, ok, err := model.ParseGeoEntry(s); ok {
		if err != nil {
			return netip.Prefix{}, "", model.Geo{}, fmt.Errorf("%q: %w", s, err)
		}
		return netip.Prefix{}, "", g, nil
	}
	p, err = model.ParseValue(s)
	if err != nil {
		return netip.Prefix{}, "", model.Geo{}, fmt.Errorf("%q: want an IP address, CIDR range, hostname, country:CC or as:N", s)
	}
	if err := model.CheckAllowWidth(p); err != nil && !wide {
		return netip.Prefix{}, "", model.Geo{}, fmt.Errorf("%q: %w", s, err)
	}
	return p, "", model.Geo{}, nil
}

// ParseFile reads an include file: one entry a line, an address, a range,
// a hostname, country:CC or as:N, optionally followed by "# comment", which becomes the
// entry's comment. Blank lines and lines starting with # are skipped. A
// bad line is reported (file:line) and skipped, so one typo does not drop
// every other entry of the file.
func ParseFile(name string, data []byte, wide bool) ([]Entry, []error) {
	var out []Entry
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		value, comment, _ := strings.Cut(line, "#")
		fields := strings.Fields(value)
		if len(fields) != 1 {
			errs = append(errs, fmt.Errorf("%s:%d: want one address, range, hostname, country:CC or as:N a line (then # comment)", name, n))
			continue
		}
		if _, _, _, err := parseValue(fields[0], wide); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		out = append(out, Entry{Value: fields[0], Comment: strings.TrimSpace(comment), Source: SourceFile, File: name, Line: n})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return out, errs
}
