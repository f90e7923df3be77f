package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// maxImportBytes bounds what decisions import reads: a blocklist of a
// million addresses is about 16 MiB as one value a line.
const maxImportBytes = 64 << 20

// importDefaults are what a line that does not say takes.
type importDefaults struct {
	duration, reason, typ, scope string
}

// importInput is a parsed input: the entries to send and the lines refused
// before sending, each naming its line.
type importInput struct {
	entries []api.ImportEntry
	skipped []api.ImportSkip
	// seen is the line of each value taken, canonical when it parses:
	// a list repeating a value would otherwise stack decisions on it.
	seen map[string]int
}

func (in *importInput) skip(line int, value, format string, args ...any) {
	in.skipped = append(in.skipped, api.ImportSkip{Line: line, Value: value, Reason: fmt.Sprintf(format, args...)})
}

// add checks what the daemon cannot: the scope, which the value alone
// gives in moat, must not say otherwise.
func (in *importInput) add(line int, e api.NewDecision, scope string, def importDefaults) {
	e.Value = strings.TrimSpace(e.Value)
	if e.Duration == "" {
		e.Duration = def.duration
	}
	if e.Reason == "" {
		e.Reason = def.reason
	}
	if e.Type == "" {
		e.Type = def.typ
	}
	if scope == "" {
		scope = def.scope
	}
	if e.Value == "" {
		in.skip(line, "", "no value")
		return
	}
	if err := checkScope(e.Value, scope); err != nil {
		in.skip(line, e.Value, "%v", err)
		return
	}
	key := e.Value
	if p, err := model.ParseValue(e.Value); err == nil {
		key = model.ValueString(p)
	}
	if first, ok := in.seen[key]; ok {
		in.skip(line, e.Value, "duplicate of line %d", first)
		return
	}
	if in.seen == nil {
		in.seen = map[string]int{}
	}
	in.seen[key] = line
	in.entries = append(in.entries, api.ImportEntry{NewDecision: e, Line: line})
}

// checkScope accepts CrowdSec's ip and range scopes when the value is one;
// other scopes (username, country, ...) have nothing to ban in a kernel.
func checkScope(value, scope string) error {
	switch strings.ToLower(scope) {
	case "", "ip":
		if _, err := netip.ParseAddr(value); err != nil && scope != "" {
			return fmt.Errorf("scope %s: want an IP address", scope)
		}
	case "range":
		if _, err := netip.ParsePrefix(value); err != nil {
			return fmt.Errorf("scope %s: want a CIDR range", scope)
		}
	default:
		return fmt.Errorf("scope %q: only ip and range can be banned", scope)
	}
	return nil
}

// detectFormat picks the format from the file name, else from the content:
// a JSON array, a CSV header naming value, or one value a line.
func detectFormat(name string, data []byte) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return "json"
	case ".csv":
		return "csv"
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return "json"
	}
	first, _, _ := bytes.Cut(trimmed, []byte("\n"))
	if bytes.Contains(first, []byte(",")) {
		for _, f := range strings.Split(string(first), ",") {
			if strings.EqualFold(strings.TrimSpace(f), "value") {
				return "csv"
			}
		}
	}
	return "values"
}

// parseImport reads data in format. A malformed file (bad JSON, a CSV
// without a value column) is an error naming its line; a bad entry in a
// good file is skipped and reported.
func parseImport(name string, data []byte, format string, def importDefaults) (importInput, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	switch format {
	case "values":
		return parseValues(name, data, def)
	case "csv":
		return parseCSV(name, data, def)
	case "json":
		return parseJSON(name, data, def)
	}
	return importInput{}, usagef("--format %q: want csv, json or values", format)
}

// parseValues reads one value a line; blank lines and # comments are
// skipped, and anything after the value (a list's own annotations, as in
// "198.51.100.0/24 ; SBL123") is ignored.
func parseValues(name string, data []byte, def importDefaults) (importInput, error) {
	var in importInput
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 1
	for ; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' || text[0] == ';' {
			continue
		}
		fields := strings.Fields(text)
		in.add(line, api.NewDecision{Value: fields[0]}, "", def)
	}
	if err := sc.Err(); err != nil {
		return in, usagef("%s:%d: %v", name, line, err)
	}
	return in, nil
}

// importColumns are the columns a CSV may have, cscli's with moat's
// scenario; origin is read and ignored (an import is always origin cli).
var importColumns = []string{"value", "duration", "reason", "scope", "type", "origin", "scenario"}

func parseCSV(name string, data []byte, def importDefaults) (importInput, error) {
	var in importInput
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.Comment = '#'
	header, err := r.Read()
	if err != nil {
		return in, usagef("%s: CSV header: %v", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		known := false
		for _, c := range importColumns {
			known = known || c == h
		}
		if !known {
			return in, usagef("%s:1: CSV column %q: want any of %s", name, h, strings.Join(importColumns, ", "))
		}
		col[h] = i
	}
	if _, ok := col["value"]; !ok {
		return in, usagef("%s:1: CSV header has no value column", name)
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return in, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount) {
				return in, usagef("%s:%d: %v", name, pe.Line, pe.Err)
			}
			return in, usagef("%s: %v", name, err)
		}
		line, _ := r.FieldPos(0)
		get := func(k string) string {
			if i, ok := col[k]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		in.add(line, api.NewDecision{Value: get("value"), Duration: get("duration"), Reason: get("reason"), Type: get("type"), Scenario: get("scenario")}, get("scope"), def)
	}
}

// jsonEntry is one object of a JSON import, cscli's fields and scenario.
type jsonEntry struct {
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
}

func parseJSON(name string, data []byte, def importDefaults) (importInput, error) {
	var in importInput
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	dec := json.NewDecoder(bytes.NewReader(data))
	bad := func(err error) (importInput, error) {
		off := dec.InputOffset()
		// A syntax error knows where it is; the decoder stops before the
		// value it failed on.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		return in, usagef("%s:%d: %v", name, lineAt(off), err)
	}
	tok, err := dec.Token()
	if err != nil {
		return bad(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return bad(errors.New("want a JSON array of objects"))
	}
	for dec.More() {
		// The object starts after the separator the decoder is at.
		start := dec.InputOffset()
		rest := data[start:]
		start += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n,")))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return bad(err)
		}
		line := lineAt(start)
		var e jsonEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			in.skip(line, "", "want an object of strings: %v", err)
			continue
		}
		in.add(line, api.NewDecision{Value: e.Value, Duration: e.Duration, Reason: e.Reason, Type: e.Type, Scenario: e.Scenario}, e.Scope, def)
	}
	if _, err := dec.Token(); err != nil {
		return bad(err)
	}
	return in, nil
}
