package grok

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/grok/internal/ascii"
)

// regexpOnly is c with Go's regexp as its only matcher: no Fast or
// Backtrack tier, no variant, anchored try or prefilter.
func regexpOnly(c *Pattern) *Pattern {
	return &Pattern{lib: c.lib, src: c.src, tiers: []Tier{Regexp}, full: variant{rx: c.full.rx, names: c.full.names}}
}

// Every grok the hub's parsers compile finds, on every line of the hub's
// test logs, the submatches Go's regexp finds, in each of its variants.
func TestASCIIMatchesRegexpOnHubLogs(t *testing.T) {
	root := sharedHub(t)
	logs, _ := filepath.Glob(filepath.Join(root, "hub", ".tests", "*", "*.log"))
	seen := map[string]bool{}
	var lines []string
	for _, f := range logs {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			if l := sc.Text(); !seen[l] {
				seen[l] = true
				lines = append(lines, l)
			}
		}
		fh.Close()
	}
	if len(lines) < 1000 {
		t.Fatalf("%d test log lines, want the hub's thousands", len(lines))
	}
	files, _ := filepath.Glob(filepath.Join(root, "hub", "parsers", "*", "*", "*.yaml"))
	var m ascii.Machine
	groks, compiled, compared, matched := 0, 0, 0, 0
	var tiers TierCounts
	done := map[string]bool{}
	for _, f := range files {
		g := New(Options{})
		if err := g.LoadDir(filepath.Join(root, "patterns")); err != nil {
			t.Fatal(err)
		}
		ps, err := compileParserFile(g, f)
		if err != nil {
			continue
		}
		for _, c := range ps {
			src := c.String()
			if done[src] {
				continue
			}
			done[src] = true
			groks++
			tiers[c.Tier()]++
			if c.full.prog != nil {
				compiled++
			} else {
				t.Logf("left to regexp: %s", src)
			}
			for _, v := range []*variant{&c.full, c.v4, c.v6} {
				if v == nil || v.prog == nil {
					continue
				}
				caps := make([]int, v.prog.NumSlots())
				re, _ := v.regexps()
				for _, l := range lines {
					got, ok := v.prog.Find(&m, l, caps)
					if !ok {
						continue
					}
					if !hasAll(l, c.lits) {
						// No match can lack a required literal: only
						// the ASCII side needs running.
						if got {
							t.Fatalf("grok %q matched %q, which lacks one of %q", src, l, c.lits)
						}
						continue
					}
					compared++
					want := re.FindStringSubmatchIndex(l)
					if got != (want != nil) || got && !slices.Equal(caps, want) {
						t.Fatalf("grok %q on %q: ascii %v %v, regexp %v", src, l, got, caps, want)
					}
					if got {
						matched++
					}
				}
			}
		}
	}
	t.Logf("hub groks served first by tier: fast %d, backtrack %d, regexp %d", tiers[Fast], tiers[Backtrack], tiers[Regexp])
	t.Logf("%d groks, %d compiled for ASCII; %d comparisons over %d lines, %d matches", groks, compiled, compared, len(lines), matched)
	if compiled < groks*9/10 || matched < 1000 {
		t.Errorf("%d of %d groks compiled, %d matches compared: too few to show anything", compiled, groks, matched)
	}
}

func hasAll(s string, lits []string) bool {
	for _, l := range lits {
		if !strings.Contains(s, l) {
			return false
		}
	}
	return true
}
