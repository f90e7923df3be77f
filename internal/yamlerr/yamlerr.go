// Package yamlerr turns gopkg.in/yaml.v3 errors into one line that names
// the file and line, "moat.yaml:4: unknown key "lisen"", the form every moat
// loader reports.
package yamlerr

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

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
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
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
		msg = fmt.Sprintf("unknown key %q", u[1])
	}
	return &Error{File: file, Line: line, Msg: msg, Err: err}
}

// At reports err at a known line of file, on one line.
func At(file string, line int, err error) error {
	return &Error{File: file, Line: line, Msg: strings.ReplaceAll(err.Error(), "\n", " "), Err: err}
}
