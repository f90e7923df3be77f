package parse

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// grokLib holds pattern definitions (NAME -> grok text) and their
// expansions, so each pattern is expanded and compiled once.
type grokLib struct {
	defs     map[string]string
	expanded map[string]string
	compiled map[string]*grok
}

func newGrokLib() *grokLib {
	g := &grokLib{
		defs:     make(map[string]string, len(basePatterns)),
		expanded: map[string]string{},
		compiled: map[string]*grok{},
	}
	for k, v := range basePatterns {
		g.defs[k] = v
	}
	return g
}

// loadDir reads every pattern file in dir ("NAME REGEX" per line, # comments).
func (g *grokLib) loadDir(dir string) error {
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

func (g *grokLib) loadFile(path string) error {
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
		g.add(l[:i], strings.TrimSpace(l[i:]))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read patterns %s: %w", path, err)
	}
	return nil
}

func (g *grokLib) add(name, def string) {
	g.defs[name] = def
	// A redefinition invalidates expansions that may depend on it.
	clear(g.expanded)
	clear(g.compiled)
}

// grok is a compiled grok pattern.
type grok struct {
	re *regexp.Regexp
	// names[i] is the field name of submatch i ("" for unnamed groups).
	names []string
	// lit is a substring every match contains; checked before the regexp.
	lit string
}

// expand turns grok text into a Go regexp; names collects field names for
// the generated groups.
func (g *grokLib) expand(src string, names *[]string, depth int) (string, error) {
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
		inner, err := g.expand(def, names, depth+1)
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

func (g *grokLib) compile(src string) (*grok, error) {
	if c, ok := g.compiled[src]; ok {
		return c, nil
	}
	var gen []string
	rx, err := g.expand(src, &gen, 0)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(rx)
	if err != nil {
		return nil, fmt.Errorf("compile grok %q: %w", src, err)
	}
	c := &grok{re: re, names: make([]string, re.NumSubexp()+1)}
	for i, n := range re.SubexpNames() {
		if n == "" {
			continue
		}
		if strings.HasPrefix(n, "g") {
			if k, err := strconv.Atoi(n[1:]); err == nil && k < len(gen) {
				c.names[i] = gen[k]
				continue
			}
		}
		c.names[i] = n // a raw (?<name>...) group of the pattern text
	}
	c.lit = requiredLiteral(rx)
	g.compiled[src] = c
	return c, nil
}

// match runs the grok on s and calls set for every named group, matched
// or not (unmatched groups are ""), as CrowdSec's grok does. For names
// used twice the last non-empty value wins.
func (c *grok) match(s string, set func(k, v string)) bool {
	if c.lit != "" && !strings.Contains(s, c.lit) {
		return false
	}
	idx := c.re.FindStringSubmatchIndex(s)
	if idx == nil {
		return false
	}
	for i := 1; i < len(c.names); i++ {
		n := c.names[i]
		if n == "" {
			continue
		}
		a, z := idx[2*i], idx[2*i+1]
		v := ""
		if a >= 0 {
			v = s[a:z]
		}
		if v == "" && c.dupEarlierSet(i) {
			continue
		}
		set(n, v)
	}
	return true
}

// dupEarlierSet reports whether a group before i carries the same name, in
// which case an empty later value must not clobber it.
func (c *grok) dupEarlierSet(i int) bool {
	for j := 1; j < i; j++ {
		if c.names[j] == c.names[i] {
			return true
		}
	}
	return false
}

// requiredLiteral finds the longest literal every match must contain.
func requiredLiteral(rx string) string {
	re, err := syntax.Parse(rx, syntax.Perl)
	if err != nil {
		return ""
	}
	best := ""
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		switch r.Op {
		case syntax.OpLiteral:
			if r.Flags&syntax.FoldCase == 0 {
				if s := string(r.Rune); len(s) > len(best) {
					best = s
				}
			}
		case syntax.OpCapture, syntax.OpPlus:
			walk(r.Sub[0])
		case syntax.OpRepeat:
			if r.Min >= 1 {
				walk(r.Sub[0])
			}
		case syntax.OpConcat:
			for _, s := range r.Sub {
				walk(s)
			}
		}
	}
	walk(re)
	if len(best) < 2 {
		return ""
	}
	return best
}
