package ascii

import (
	"errors"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"time"
)

// patterns cover what grok patterns are made of and where backtracking
// and Go's regexp could part: alternation priority, lazy and greedy runs,
// groups in loops (the last iteration's submatch), bounded repetition,
// assertions, case folding and optional groups that may not take part.
var patterns = []string{
	`abc`,
	`a|ab|abc`,
	`(a|ab)(c|bcd)(d*)`,
	`(a+)(b+)?`,
	`(a*?)(a*)`,
	`(.*?)x(.*)`,
	`(.*)x(.*?)`,
	`^(\w+)\s+(\d+)$`,
	`(?m)^(\w+)$`,
	`\b(\w+)\b`,
	`\B(\w)\B`,
	`(?i)hello (w)orld`,
	`(?i)[k-m]+`,
	`(?i)\x{212A}elvin`,
	`([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})`,
	`(?:(\d)x){2,4}`,
	`(?:(\d)x){2,4}?y`,
	`(ab){0,2}(ab)*`,
	`([a-z]+)@([a-z]+)\.(com|org)`,
	`(?:[0-1]?[0-9]{1,2}|2[0-4][0-9]|25[0-5])(?:\.(?:[0-1]?[0-9]{1,2}|2[0-4][0-9]|25[0-5])){3}`,
	`Failed (\w+) for (invalid user )?(\S+) from (\S+)( port \d+)?`,
	`(?P<user>[a-zA-Z0-9._-]+)?@(?P<host>\S+)`,
	`x*`,
	`()`,
	`(a?)(b?)$`,
	`.+`,
	`(?s).+`,
	`[^a-c]+(z)`,
	`(\S+) "([^"]*)" (\d{3}) (\d+|-)`,
	`\Afoo|bar\z`,
	`(a|b|c)+?(c)`,
	`((a)|(b))+`,
	`é|e`,
	`[^\x00-\x{10FFFF}]|q`,
	// Backtracks past the first search's budget with group 1 set, then
	// matches without it.
	`(?:(a)(?:a+a+)+b|a+c)`,
	// Greedy runs given back to where what follows can start (follow),
	// and those whose follower can match empty or asserts first.
	`^Failed (?:password|none) for (?:invalid user )?(.*) from (\S+)(?: port (\d+))?\s*$`,
	`(.*) (\d+)`,
	`(.*)(?:ab|cd)x`,
	`a(.*)(b?)c`,
	`(.*)\bx`,
	`(.*)(?:x|$)`,
	`(?:(.*),)+;`,
	// Loops over an alternation with one-byte alternatives, run as runs.
	`"((?:[^"\\]|\\.)*)" "((?:\\.|[^"\\])*)"`,
	`(?:[ab]|c[ab])*c`,
	`(?:a|[bc]d|e|f)*(d)`,
	`((?:[0-9]|x[0-9]+)*)(x?)`,
	`(?:[ab]|a[cd])*d`,
	`((?:a[cd]|[ab])*)(.*)`,
}

var inputs = []string{
	"", "a", "ab", "abc", "abcd", "aab", "abbb", "aaa", "xax", "axbxc", "zzxyyxq",
	"hello world", "HeLLo WoRld", "Kelvin kelvin", "KLM kml",
	"1.2.3.4", "192.168.001.255 and 256.1.1.1", "10.0.0.1x2x3x4xy",
	"abab", "ababab", "foo@example.com bar@x.org", "@h",
	"Failed password for invalid user admin from 203.0.113.7 port 22 ssh2",
	"Failed none for invalid user x from y from 203.0.113.7 port 22  ",
	"a b 1 2 3", "zzabxcdxq cdx", "abbc ac", "a,b,;c,;",
	`"a\"b" "c\\" d"`, `"x" "y\`, "abcacbcc", "abecbdfd", "12x345x", "12x", "aadad", "acd",
	"Failed publickey for root from 2001:db8::1",
	"word1 123", "word1 123\nword2 45", "line\nnext\n",
	`1.2.3.4 "GET / HTTP/1.1" 200 512`, `x "" 404 -`,
	"foo", "xbar", "barfoo", "cabcc", "abba", "dddz", "café e",
	"\x00\x01\x7f", strings.Repeat("a", 300) + "b", strings.Repeat("a", 30) + "c",
}

func compileBoth(t testing.TB, pat string) (*regexp.Regexp, *Prog) {
	t.Helper()
	re := regexp.MustCompile(pat)
	parsed, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(parsed)
	if err != nil {
		t.Fatalf("%s: %v", pat, err)
	}
	if p.NumSlots() != 2*(re.NumSubexp()+1) {
		t.Fatalf("%s: %d slots, regexp has %d groups", pat, p.NumSlots(), re.NumSubexp())
	}
	return re, p
}

// agree checks p against re on s; it reports whether p answered.
func agree(t testing.TB, re *regexp.Regexp, p *Prog, m *Machine, s string) bool {
	t.Helper()
	caps := make([]int, p.NumSlots())
	matched, ok := p.Find(m, s, caps)
	if !ok {
		return false
	}
	want := re.FindStringSubmatchIndex(s)
	if matched != (want != nil) {
		t.Fatalf("%q on %q: matched %v, regexp %v", re, s, matched, want != nil)
	}
	if matched && !slices.Equal(caps, want) {
		t.Fatalf("%q on %q: submatches %v, regexp %v", re, s, caps, want)
	}
	return true
}

func TestFindMatchesRegexp(t *testing.T) {
	m := &Machine{}
	for _, pat := range patterns {
		re, p := compileBoth(t, pat)
		for _, s := range inputs {
			// Short ASCII lines are within budget for every pattern
			// here; the rest may be left to regexp.
			if !agree(t, re, p, m, s) && isASCII(s) && len(s) < 100 {
				t.Errorf("%s: no answer on %q", pat, s)
			}
		}
	}
}

func TestUnsupported(t *testing.T) {
	for _, pat := range []string{`(a*)*`, `(a|)+b`, `(?:\b)*x`, `(a?){2,}`} {
		parsed, err := syntax.Parse(pat, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Compile(parsed); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v, want ErrUnsupported", pat, err)
		}
	}
	// An empty-matching group repeated a fixed number of times is fine.
	compileBoth(t, `(a?){3}`)
}

// A pattern that backtracks exponentially is answered in linear time once
// the search remembers failed states, and an input too long for that
// memory is handed to regexp.
func TestExponentialPattern(t *testing.T) {
	re, p := compileBoth(t, `(?:a+a+)+b`)
	m := &Machine{}
	for _, n := range []int{3, 40, 5000} {
		start := time.Now()
		if !agree(t, re, p, m, strings.Repeat("a", n)) {
			t.Errorf("no answer on %d bytes", n)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%d bytes took %v", n, d)
		}
	}
	caps := make([]int, p.NumSlots())
	if _, ok := p.Find(m, strings.Repeat("a", maxVisited/p.memoLen), caps); ok {
		t.Error("answered past the memory bound")
	}
}

// The search that remembers failed states, on the memo program built
// from the runs of the first, finds the submatches Go's regexp finds.
func TestMemoSearchMatchesRegexp(t *testing.T) {
	m := &Machine{}
	for _, pat := range patterns {
		re, p := compileBoth(t, pat)
		memo := p.memoInsts()
		if len(memo) != p.memoLen {
			t.Fatalf("%s: memo program of %d instructions, want %d", pat, len(memo), p.memoLen)
		}
		for _, s := range inputs {
			if !isASCII(s) {
				continue
			}
			caps := make([]int, p.NumSlots())
			for i := range caps {
				caps[i] = -1
			}
			visited := make([]uint64, (len(memo)*(len(s)+1)+63)/64)
			matched, _ := p.search(m, memo, s, caps, -1, visited)
			want := re.FindStringSubmatchIndex(s)
			if matched != (want != nil) || matched && !slices.Equal(caps, want) {
				t.Fatalf("%s on %q: memo search %v %v, regexp %v", pat, s, matched, caps, want)
			}
		}
	}
}

// A search that goes deep leaves the machine with a stack of bounded size.
func TestDeepSearchStack(t *testing.T) {
	re, p := compileBoth(t, `(?:ab|cd)*e`)
	m := &Machine{}
	if !agree(t, re, p, m, strings.Repeat("ab", 40000)) {
		t.Fatal("no answer")
	}
	if cap(m.stack) > maxKeptFrames {
		t.Errorf("the machine kept a stack of %d frames", cap(m.stack))
	}
}

func FuzzFind(f *testing.F) {
	for i, s := range inputs {
		f.Add(uint8(i), s)
	}
	progs := make([]*Prog, len(patterns))
	res := make([]*regexp.Regexp, len(patterns))
	for i, pat := range patterns {
		res[i], progs[i] = compileBoth(f, pat)
	}
	m := &Machine{}
	f.Fuzz(func(t *testing.T, k uint8, s string) {
		i := int(k) % len(patterns)
		agree(t, res[i], progs[i], m, s)
	})
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		pat    string
		follow string // the bytes of the first greedy run's follow set; "-" for none
	}{
		{`(.*) from (\S+)`, " "},
		{`(.*)(?:ab|cd)x`, "ac"},
		{`a(.*)(b?)c`, "bc"},
		{`(.*)$`, "-"},
		{`(.*)(?:x|$)`, "-"},
		{`(.*)\bx`, "-"},
	} {
		_, p := compileBoth(t, tc.pat)
		i := slices.IndexFunc(p.insts, func(in inst) bool { return in.op == opRun })
		got := "-"
		if f := p.insts[i].follow; f != nil {
			got = ""
			for c := range 128 {
				if f.has(byte(c)) {
					got += string(rune(c))
				}
			}
		}
		if got != tc.follow {
			t.Errorf("%s: follow %q, want %q", tc.pat, got, tc.follow)
		}
	}
}
