package parse

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/parse/internal/ascii"
)

// regexpOnly is c with Go's regexp as its only matcher.
func regexpOnly(c *grok) *grok {
	plain := *c
	plain.v4, plain.anch, plain.anch4, plain.fast, plain.lits, plain.pre, plain.v6 = nil, nil, nil, nil, nil, "", nil
	plain.ascii, plain.ascii4, plain.ascii6 = nil, nil, nil
	return &plain
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
	done := map[string]bool{}
	for _, f := range files {
		p, err := Load([]File{{Path: f, Stage: filepath.Base(filepath.Dir(filepath.Dir(f)))}}, Options{
			PatternDir: filepath.Join(root, "patterns"),
			DataDir:    filepath.Join(root, "data"),
		})
		if err != nil {
			continue
		}
		for src, c := range p.grok.compiled {
			if done[src] {
				continue
			}
			done[src] = true
			groks++
			if c.ascii != nil {
				compiled++
			} else {
				t.Logf("left to regexp: %s", src)
			}
			for _, v := range []struct {
				re   *regexp.Regexp
				prog *ascii.Prog
			}{{c.re, c.ascii}, {c.v4, c.ascii4}, {c.v6, c.ascii6}} {
				if v.re == nil || v.prog == nil {
					continue
				}
				caps := make([]int, v.prog.NumSlots())
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
					want := v.re.FindStringSubmatchIndex(l)
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
