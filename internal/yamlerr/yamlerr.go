// Package yamlerr turns go.yaml.in/yaml/v3 errors into one line that names
// the file and line, "moat.yaml:4: unknown key "lisen"", the form every moat
// loader reports: moat.yaml, acquisition, profiles, parsers, scenarios and
// collections.
package yamlerr

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Error is a problem at a line of a file (Line 0: somewhere in the file).
type Error struct {
	File string
	Line int
	Msg  string
	Err  error // what it wraps, if anything
}

func (e *Error) Error() string {
	msg := clip(e.Msg, maxMsg)
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, msg)
	}
	return fmt.Sprintf("%s: %s", e.File, msg)
}

// maxMsg bounds a message: whatever a loader quotes from a file, an error
// stays one readable line, never the file.
const maxMsg = 512

// maxExcerpt is how much of a value Excerpt quotes.
const maxExcerpt = 64

// Excerpt quotes s (as %q does) for an error message, cut to its first 64
// bytes: a value in a file may be megabytes long.
func Excerpt(s string) string {
	if len(s) <= maxExcerpt {
		return strconv.Quote(s)
	}
	return strconv.Quote(clip(s, maxExcerpt)) + fmt.Sprintf(" (%d bytes)", len(s))
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func (e *Error) Unwrap() error { return e.Err }

var (
	lineRE    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownRE = regexp.MustCompile(`^field (\S+) not found in type `)
)

// Wrap converts a yaml.v3 decoding error for file. A strict decode that
// failed on several keys reports the first; "field x not found" reads
// "unknown key "x"". Errors that are not yaml.v3's come back as they are.
func Wrap(file string, err error) error {
	if err == nil {
		return nil
	}
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msgs = te.Errors
	} else if !strings.HasPrefix(msgs[0], "yaml: ") {
		return err
	}
	first := strings.TrimSpace(msgs[0])
	m := lineRE.FindStringSubmatch(first)
	if m == nil {
		return &Error{File: file, Msg: strings.TrimPrefix(first, "yaml: "), Err: err}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if u := unknownRE.FindStringSubmatch(msg); u != nil {
		msg = "unknown key " + Excerpt(u[1])
	}
	return &Error{File: file, Line: line, Msg: msg, Err: err}
}

// Size limits of the files moat reads. A config file is a few kilobytes
// and a hub file rarely over a hundred; the limits keep a wrong path (a
// log, a disk image) from being read whole into memory.
const (
	MaxConfigFile = 1 << 20  // moat.yaml, acquisition and profile files
	MaxHubFile    = 16 << 20 // parsers, scenarios, collections, patterns
)

// ErrTooLarge is wrapped by ReadFile's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads path, at most limit bytes: a larger file is an *Error
// naming the limit, found without reading past it.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %s, the limit for this kind of file", sizeString(limit)), Err: ErrTooLarge}
	}
	return data, nil
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
