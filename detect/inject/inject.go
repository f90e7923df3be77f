// Package inject checks that the source address parsers extract cannot be
// moved by text an attacker controls. Given parsers and real sample lines,
// it rewrites each free-text field the parsers extracted from a line (user
// names, paths, user agents, referers, host names) to carry text shaped
// like the line's own address part, parses the rewritten line again, and
// reports the parsers that then yield the injected address: the address
// the scenarios would ban in the attacker's place.
//
// Which fields an attacker controls is derived from what the parsers
// extracted from the clean line: every field a stage after s00-raw set
// whose value contains a letter, appears verbatim in the line and is
// neither the address, a time, a hex identifier, nor named like a field
// the program fills from its own vocabulary (level, protocol, action).
// Inside a quoted field no payload carries a quote, since the programs
// that quote fields escape quotes; nothing else about what a program lets
// a client write is modelled, so a finding says what the parser accepts.
// Fields taken from JSON (Unmarshaled) are not rewritten.
package inject

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/parse"
)

// The addresses attacks inject (RFC 5737 and RFC 3849 documentation
// ranges, so that no sample line holds them already).
const (
	Injected4 = "198.51.100.99"
	Injected6 = "2001:db8:dead:beef::99"
)

// SourceField is the event field the scenarios group and ban on.
const SourceField = "source_ip"

// Target is a set of parsers and the sample lines to attack them with.
type Target struct {
	// Name says where the lines come from: a hub test, a sample file.
	Name    string
	Parsers []parse.File
	// Labels are the acquisition labels; "type" selects the s00 parsers.
	Labels map[string]string
	Lines  []string
	// ProgramFields are parsed fields the program writing the log fills
	// from its own state, beyond those programField recognises by name
	// (the kernel's interface names): they are never rewritten.
	ProgramFields []string
}

// Options locate what the parsers load besides their files.
type Options struct {
	PatternDir, DataDir string
	// Year is given to log dates without one; 0 means 2026, so that
	// runs do not depend on the clock.
	Year int
}

// Finding is a line whose source address an attacker moved.
type Finding struct {
	// Parser extracted the injected address from Attack.
	Parser string
	Target string
	// Fields are the parsed fields of Line an attack moved the source
	// through; Attack rewrote the first.
	Fields []string
	// Line is the clean sample, Attack the rewritten one, Source what the
	// parsers extracted from it and Want what they extracted from Line.
	Line, Attack, Source, Want string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: through %s, takes %s instead of %s from %q (sample %q of %s)", f.Parser, strings.Join(f.Fields, ", "), f.Source, f.Want, f.Attack, f.Line, f.Target)
}

// Report is the outcome of a scan.
type Report struct {
	// Lines counts sample lines that yielded a source address, Formats
	// the distinct line formats among them (only the first line of a
	// format is attacked), Attacks the rewritten lines parsed.
	Lines, Formats, Attacks int
	// Findings holds the first finding per parser, sorted by parser.
	Findings []Finding
	// Attacked counts, per parser that extracted a clean line's source,
	// the attacks made on its lines.
	Attacked map[string]int
	// Skipped are targets that could not be loaded, with the reason.
	Skipped []string
	Elapsed time.Duration
}

// Injectable lists the parsers with a finding, sorted.
func (r *Report) Injectable() []string {
	out := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		out = append(out, f.Parser)
	}
	return out
}

// Scan attacks every target's lines. A target whose parsers fail to load
// is skipped and recorded in the report; only cancellation is an error.
func Scan(ctx context.Context, targets []Target, opts Options) (*Report, error) {
	start := time.Now()
	if opts.Year == 0 {
		opts.Year = 2026
	}
	s := &scanner{
		opts:    opts,
		rep:     &Report{Attacked: map[string]int{}},
		engines: map[string]*engine.Engine{},
		formats: map[string]bool{},
		found:   map[string]*Finding{},
	}
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		eng, err := s.engine(t.Parsers)
		if err != nil {
			s.rep.Skipped = append(s.rep.Skipped, fmt.Sprintf("%s: %v", t.Name, err))
			continue
		}
		for _, raw := range t.Lines {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s.line(eng, t, raw)
		}
	}
	for _, f := range s.found {
		s.rep.Findings = append(s.rep.Findings, *f)
	}
	sort.Slice(s.rep.Findings, func(i, j int) bool { return s.rep.Findings[i].Parser < s.rep.Findings[j].Parser })
	s.rep.Elapsed = time.Since(start)
	return s.rep, nil
}

// maxEngines bounds the loaded parser sets a scan keeps.
const maxEngines = 16

type scanner struct {
	opts Options
	rep  *Report
	// engines are loaded once per parser set: hub tests share most.
	engines map[string]*engine.Engine
	// formats holds the line formats already attacked, per parser.
	formats map[string]bool
	found   map[string]*Finding
}

func (s *scanner) engine(files []parse.File) (*engine.Engine, error) {
	keys := make([]string, 0, len(files))
	for _, f := range files {
		keys = append(keys, f.Stage+"/"+f.Path)
	}
	sort.Strings(keys)
	key := strings.Join(keys, "\n")
	if e, ok := s.engines[key]; ok {
		return e, nil
	}
	// No scenarios: only what the parsers extract matters, and buckets
	// would keep state from one attack to the next.
	e, err := engine.New(engine.Config{
		PatternDir: s.opts.PatternDir, DataDir: s.opts.DataDir,
		Selection: &hub.Selection{Parsers: files}, Year: s.opts.Year, Replay: true,
	})
	if err != nil {
		return nil, err
	}
	// A whole hub's engines take about a gigabyte; targets come sorted
	// by name, so those sharing parsers are mostly neighbours.
	if len(s.engines) >= maxEngines {
		clear(s.engines)
	}
	s.engines[key] = e
	return e, nil
}

func (s *scanner) parse(eng *engine.Engine, t Target, raw string, tr *parse.Trace) *detect.Event {
	l := detect.Line{
		Raw: raw, Src: t.Name, Module: "file", Labels: t.Labels, Process: true,
		ReadAt: time.Date(s.opts.Year, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	evt, _ := eng.ProcessTrace(l, tr)
	return evt
}

// field is one occurrence of an attacker-controlled value in the line.
type field struct {
	name       string
	start, end int
}

func (s *scanner) line(eng *engine.Engine, t Target, raw string) {
	var tr parse.Trace
	evt := s.parse(eng, t, raw, &tr)
	if evt == nil || !evt.Process {
		return
	}
	want := evt.Meta[SourceField]
	if want == "" || injected(want) {
		return
	}
	owner := sourceSetter(tr.Results)
	s.rep.Lines++
	if s.found[owner] != nil {
		// One flagged line format per parser is enough; its other fields
		// are still attacked on that line.
		return
	}
	fields := attackable(raw, evt, tr.Results, want, t.ProgramFields)
	if len(fields) == 0 {
		return
	}
	format := owner + "\x00" + skeleton(raw, fields, want)
	if s.formats[format] {
		return
	}
	s.formats[format] = true
	s.rep.Formats++

	msgStart := 0
	if m := evt.Parsed["message"]; m != "" {
		if i := strings.Index(raw, m); i >= 0 {
			msgStart = i
		}
	}
	for _, f := range fields {
		s.attackField(eng, t, raw, f, want, owner, msgStart)
	}
}

// attackField tries every payload on one field until one moves the source.
func (s *scanner) attackField(eng *engine.Engine, t Target, raw string, f field, want, owner string, msgStart int) {
	for _, p := range payloads(raw, f, want, msgStart) {
		attack := raw[:f.start] + p + raw[f.end:]
		s.rep.Attacks++
		s.rep.Attacked[owner]++
		got := s.parse(eng, t, attack, nil)
		if got == nil || !got.Process || !injected(got.Meta[SourceField]) {
			continue
		}
		// Trace the attack only now, to name the parser that took the
		// injected address.
		var atr parse.Trace
		s.parse(eng, t, attack, &atr)
		by := sourceSetter(atr.Results)
		if by == "" {
			by = owner
		}
		if fd, ok := s.found[by]; ok {
			if !slices.Contains(fd.Fields, f.name) {
				fd.Fields = append(fd.Fields, f.name)
			}
		} else {
			s.found[by] = &Finding{Parser: by, Target: t.Name, Fields: []string{f.name}, Line: raw, Attack: attack, Source: got.Meta[SourceField], Want: want}
		}
		return
	}
}

// injected reports whether a source value carries one of the addresses
// the attacks inject.
func injected(v string) bool {
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		return a == netip.MustParseAddr(Injected4) || a == netip.MustParseAddr(Injected6)
	}
	return strings.Contains(v, Injected4) || strings.Contains(strings.ToLower(v), Injected6)
}

// sourceSetter names the parser whose node last changed the source field.
func sourceSetter(results []parse.NodeResult) string {
	by, prev := "", ""
	for _, r := range results {
		if r.Evt == nil {
			continue
		}
		if v := r.Evt.Meta[SourceField]; v != prev {
			by, prev = r.Parser, v
		}
	}
	return by
}

var (
	timeLike = regexp.MustCompile(`\d:\d\d`)
	// hexLike are identifiers and MAC addresses: machine-written.
	hexLike = regexp.MustCompile(`^(?:[0-9a-fA-F]+(?:[:.-][0-9a-fA-F]+)+|[0-9a-fA-F]*[0-9][0-9a-fA-F]*)$`)
)

// programField names fields the logging program writes from its own
// vocabulary (levels, protocols, actions, flags, parts of a time): a
// client cannot choose their text.
var programField = regexp.MustCompile(`(?i)(level|severity|priority|facility|proto|protocol|action|flags)$|^(ts|time|date|month|day|year)`)

// attackable finds the fields an attacker may have written: those a stage
// after the first set, holding a letter, found verbatim in the line, and
// neither the address nor a time, nor named as a field the program writes
// itself. At most three occurrences of a value are
// attacked, in line order.
func attackable(raw string, evt *detect.Event, results []parse.NodeResult, source string, program []string) []field {
	first := map[string]bool{}
	if len(results) > 0 {
		stage := results[0].Stage
		for _, r := range results {
			if r.Stage != stage || r.Evt == nil {
				continue
			}
			for k := range r.Evt.Parsed {
				first[k] = true
			}
		}
	}
	names := make([]string, 0, len(evt.Parsed))
	for k := range evt.Parsed {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []field
	for _, k := range names {
		v := evt.Parsed[k]
		if first[k] || programField.MatchString(k) || slices.Contains(program, k) || v == "" || !hasLetter(v) || strings.Contains(v, source) || timeLike.MatchString(v) || hexLike.MatchString(v) || isAddr(v) {
			continue
		}
		for i, n := 0, 0; n < 3; n++ {
			j := strings.Index(raw[i:], v)
			if j < 0 {
				break
			}
			out = append(out, field{name: k, start: i + j, end: i + j + len(v)})
			i += j + len(v)
		}
	}
	return out
}

func hasLetter(s string) bool {
	return strings.IndexFunc(s, unicode.IsLetter) >= 0
}

func isAddr(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

var digits = regexp.MustCompile(`[0-9]+`)

// skeleton is the line's format: the line with its attackable fields and
// its address replaced by markers and numbers collapsed, so that lines
// differing only in values are attacked once.
func skeleton(raw string, fields []field, source string) string {
	marks := make([]field, len(fields))
	copy(marks, fields)
	sort.Slice(marks, func(i, j int) bool { return marks[i].start < marks[j].start })
	var b strings.Builder
	at := 0
	for _, f := range marks {
		if f.start < at {
			continue
		}
		b.WriteString(raw[at:f.start])
		b.WriteString("\x00" + f.name + "\x00")
		at = f.end
	}
	b.WriteString(raw[at:])
	return digits.ReplaceAllString(strings.ReplaceAll(b.String(), source, "\x00addr\x00"), "0")
}

// addrMark stands for the injected address in payload templates.
const addrMark = "\x00"

// payloads are the texts that replace field f: the field's value followed
// by address-shaped text (the separators the line itself has between the
// field and its address, sshd's " from ADDR port N", the access log's
// quote-space-address), or, when the address comes first, the start of
// the message replayed with another address; each with an IPv4 and an
// IPv6 address.
func payloads(raw string, f field, source string, msgStart int) []string {
	v := raw[f.start:f.end]
	a := addrMark
	tpl := []string{
		a,
		v + " " + a,
		v + " from " + a + " port 1",
		v + " from " + a,
		v + " " + a + " port 1",
		v + `" ` + a + ` - -`,
		v + `" "` + a + `"`,
		v + ` rhost=` + a,
	}
	// The exact separator after the field, as the grok expects it.
	sep := raw[f.end:]
	if i := strings.IndexFunc(sep, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }); i >= 0 {
		sep = sep[:i]
	}
	if sep != "" {
		tpl = append(tpl, v+sep+a, v+sep+a+sep)
	}
	// The address after the field: mirror what lies between them and
	// after the address, in growing pieces.
	if i := strings.Index(raw[f.end:], source); i >= 0 {
		ta := f.end + i
		between := raw[f.end:ta]
		tail := raw[ta+len(source):]
		tpl = append(tpl, v+between+a)
		for _, p := range tailPieces(tail) {
			tpl = append(tpl, v+between+a+p)
		}
	}
	// The address before the field: replay the message's start up to the
	// field with the injected address in place of the true one.
	if i := strings.LastIndex(raw[:f.start], source); i >= msgStart {
		head := raw[msgStart:i]
		mid := raw[i+len(source) : f.start]
		tpl = append(tpl, head+a+mid+v, a+mid+v)
	}
	// Programs that quote a field escape quotes inside it (nginx writes
	// \x22, Apache \", JSON \"): a client cannot close the quotes.
	quoted := strings.Count(raw[msgStart:f.start], `"`)%2 == 1
	seen := map[string]bool{v: true}
	var out []string
	for _, addr := range []string{Injected4, Injected6} {
		for _, t := range tpl {
			p := strings.ReplaceAll(t, addrMark, addr)
			if quoted && strings.Contains(p, `"`) {
				continue
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// tailPieces cuts s after each of its first three words, and whole.
func tailPieces(s string) []string {
	var out []string
	words := 0
	for i := 1; i < len(s) && words < 3; i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			out = append(out, s[:i])
			words++
		}
	}
	if len(s) > 0 {
		out = append(out, s)
	}
	return out
}
