// Package grok compiles grok patterns (CrowdSec hub and Logstash syntax:
// %{NAME:field} references into a library of named regexps) and matches
// them on log lines.
//
// A compiled Pattern is served by an ordered list of matcher tiers, the
// first that answers deciding: a hand-written matcher for a few hot hub
// patterns (Fast), a backtracker for ASCII input (Backtrack, see
// internal/ascii), and Go's regexp (Regexp), which always answers and is
// the reference the other tiers are fuzzed against. Within the last two
// tiers a pattern may also run as a variant (IPv4-only, IPv6-run) chosen
// by a scan of the input; every variant gives the captures of the full
// pattern.
package grok

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moatsec/moat/detect/grok/internal/ascii"
)

// Options configure a Library.
type Options struct {
	// NoBacktrack leaves the Backtrack tier out: what the hand-written
	// matchers do not answer runs on Go's regexp, the reference the
	// backtracker is measured and fuzzed against.
	NoBacktrack bool
}

// Library holds pattern definitions (NAME -> grok text) and the patterns
// compiled from them, so each pattern is expanded and compiled once.
// Compile and Add are not safe for concurrent use; Match is.
type Library struct {
	defs     map[string]string
	compiled map[string]*Pattern
	opts     Options
	// made counts the patterns compiled, per first tier.
	made TierCounts
	// scratch holds match state (*scratch) for the library's patterns: a
	// pool, not one shared slot, so parse workers matching side by side
	// each find one instead of allocating a machine per match.
	scratch sync.Pool
	// ip6 checks the IPv6 runs of v6 variants; nil until one needs it.
	ip6 *ip6Checks
}

type scratch struct {
	m    ascii.Machine
	caps []int
}

// New returns a library holding the base patterns.
func New(opts Options) *Library {
	g := &Library{
		defs:     make(map[string]string, len(basePatterns)),
		compiled: map[string]*Pattern{},
		opts:     opts,
	}
	for k, v := range basePatterns {
		g.defs[k] = v
	}
	return g
}

// LoadDir reads every pattern file in dir ("NAME REGEX" per line, #
// comments); "" loads nothing.
func (g *Library) LoadDir(dir string) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pattern dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "LICENSE" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := g.loadFile(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (g *Library) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load patterns: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.IndexAny(l, " \t")
		if i < 0 {
			continue
		}
		g.Add(l[:i], strings.TrimSpace(l[i:]))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read patterns %s: %w", path, err)
	}
	return nil
}

// Add defines (or redefines) the pattern name.
func (g *Library) Add(name, def string) {
	g.defs[name] = def
	// A redefinition invalidates compiled patterns that may depend on it.
	clear(g.compiled)
	g.ip6 = nil
}

// Counts returns how many patterns the library compiled, per tier that
// serves them first.
func (g *Library) Counts() TierCounts { return g.made }

// expandMode selects how expand writes IPV6 and HOSTNAME.
type expandMode int

const (
	expandFull expandMode = iota
	// expandNoV6: IPV6 never matches, HOSTNAME unbounded (the v4 variant).
	expandNoV6
	// expandV6Run: IPV6 is any run of its characters, captured as
	// v6Group, HOSTNAME unbounded (the v6 variant).
	expandV6Run
)

const v6Group = "v6run"

// neverMatch is an empty character class: it matches nothing.
const neverMatch = `[^\x00-\x{10FFFF}]`

// hostnameUnbounded is HOSTNAME with {0,62} as *; see Pattern.v4.
const hostnameUnbounded = `\b(?:[0-9A-Za-z][0-9A-Za-z-]*)(?:\.(?:[0-9A-Za-z][0-9A-Za-z-]*))*(?:\.?|\b)`

// expand turns grok text into a Go regexp; names collects the field names
// of the generated groups (group gN captures names[N]).
func (g *Library) expand(src string, names *[]string, depth int, mode expandMode) (string, error) {
	if depth > 64 {
		return "", fmt.Errorf("grok pattern nests too deep")
	}
	var b strings.Builder
	for {
		i := strings.Index(src, "%{")
		if i < 0 {
			b.WriteString(src)
			break
		}
		b.WriteString(src[:i])
		j := strings.IndexByte(src[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unterminated %%{ in %q", src)
		}
		ref := src[i+2 : i+j]
		src = src[i+j+1:]
		parts := strings.SplitN(ref, ":", 3)
		def, ok := g.defs[parts[0]]
		if !ok {
			return "", fmt.Errorf("unknown grok pattern %q", parts[0])
		}
		if mode != expandFull {
			switch parts[0] {
			case "IPV6":
				def = neverMatch
				if mode == expandV6Run {
					def = "(?P<" + v6Group + ">[0-9A-Fa-f:.]+)"
				}
			case "HOSTNAME":
				def = hostnameUnbounded
			}
		}
		inner, err := g.expand(def, names, depth+1, mode)
		if err != nil {
			return "", fmt.Errorf("%s: %w", parts[0], err)
		}
		if len(parts) >= 2 && parts[1] != "" {
			*names = append(*names, parts[1])
			b.WriteString("(?P<g" + strconv.Itoa(len(*names)-1) + ">")
		} else {
			b.WriteString("(?:")
		}
		b.WriteString(inner)
		b.WriteString(")")
	}
	return b.String(), nil
}

// withDefs returns a library of the base patterns plus defs: the
// definitions a hand-written matcher or a variant was written for.
func withDefs(defs map[string]string) *Library {
	ref := New(Options{})
	for k, v := range defs {
		ref.defs[k] = v
	}
	return ref
}

// sameExpansion reports whether src expands to the same regexp, with the
// same field names, in g and ref. A pattern dir may redefine base
// patterns (a copy of them, a different spelling of the same regexp):
// only a difference in the expanded, parsed regexp counts.
func (g *Library) sameExpansion(ref *Library, src string) bool {
	var n1, n2 []string
	a, err := g.expand(src, &n1, 0, expandFull)
	if err != nil {
		return false
	}
	b, err := ref.expand(src, &n2, 0, expandFull)
	if err != nil || !slices.Equal(n1, n2) {
		return false
	}
	if a == b {
		return true
	}
	ra, err := syntax.Parse(a, syntax.Perl)
	if err != nil {
		return false
	}
	rb, err := syntax.Parse(b, syntax.Perl)
	if err != nil {
		return false
	}
	return ra.Simplify().Equal(rb.Simplify())
}

// standardV4 reports whether IPV6 and HOSTNAME expand as the built-in
// ones, which the v4 and v6 variants rely on.
func (g *Library) standardV4() bool {
	ref := New(Options{})
	return g.sameExpansion(ref, "%{IPV6}") && g.sameExpansion(ref, "%{HOSTNAME}")
}
