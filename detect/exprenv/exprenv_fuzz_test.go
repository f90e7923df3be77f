package exprenv

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
)

// dataLines is what a data file of text holds, read the plain way: one
// entry per line, a trailing CR dropped, empty lines skipped.
func dataLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

var dataSeeds = []struct{ lits, s string }{
	{"/.env\n/.git/config\nwp-config.php\n/etc/passwd\n", "/blog/../../etc/passwd"},
	{"${jndi:ldap\n${jndi:rmi\n${${lower:j}ndi\n", "GET /?x=${jndi:ldap://198.18.0.1/a} HTTP/1.1"},
	{"sqlmap\nnikto\nmasscan\nzgrab\n", "Mozilla/5.0 zgrab/0.x"},
	{"he\nshe\nhis\nhers\n../\n", "ushers"},
	{"a\r\n\r\n\nab\nabc", "xxab"},
	{"\xff\xfe\nß\nǅ\n", "STRASSE ǆ"},
	{"JjQqXxZz\nkv\n", "no rare bytes"},
}

// The literal matchers answer as a loop over the data file's lines does.
func FuzzLiteralMatchers(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add(s.lits, s.s)
	}
	f.Fuzz(func(t *testing.T, text, s string) {
		lits := dataLines(text)
		contains, prefix, suffix := false, false, false
		for _, l := range lits {
			contains = contains || strings.Contains(s, l)
			prefix = prefix || strings.HasPrefix(s, l)
			suffix = suffix || strings.HasSuffix(s, l)
		}
		if got := newACMatcher(lits).match(s); got != contains {
			t.Fatalf("contains any of %q in %q: matcher %v, loop %v", lits, s, got, contains)
		}
		if got := newAffixMatcher(lits, false).match(s); got != prefix {
			t.Fatalf("starts with any of %q: %q: matcher %v, loop %v", lits, s, got, prefix)
		}
		if got := newAffixMatcher(lits, true).match(s); got != suffix {
			t.Fatalf("ends with any of %q: %q: matcher %v, loop %v", lits, s, got, suffix)
		}
	})
}

// The regexp prefilter never hides a regexp that matches.
func FuzzRegexpPrefilter(f *testing.F) {
	f.Add("(?i)sqlmap\n\\bnikto\\b\n^Mozilla/4\\.0 \\(compatible; MSIE 6\\.0\\)$\nmass(?:scan|dns)\n", "masscan/1.3")
	f.Add("curl\n(?i)python-requests\n[a-z]+bot\n", "Googlebot/2.1")
	f.Add("a+b\nab*c\n(x|yz)\n", "yz")
	f.Add("\\x{2028}\n.\n", "\u2028")
	f.Fuzz(func(t *testing.T, text, s string) {
		var res []*regexp.Regexp
		for _, l := range dataLines(text) {
			if re, err := regexp.Compile(l); err == nil {
				res = append(res, re)
			}
		}
		want := false
		for _, re := range res {
			want = want || re.MatchString(s)
		}
		cands := res
		if p := newRegexpPrefilter(res); p != nil {
			cands = p.candidates(s, res)
		}
		got := false
		for _, re := range cands {
			got = got || re.MatchString(s)
		}
		if got != want {
			t.Fatalf("%q on %q: prefiltered %v, all regexps %v", res, s, got, want)
		}
	})
}

// fuzzEnv is an Env over a data dir holding text as a string list and as
// a regexp list; regexps is false when text is not a valid regexp list.
func fuzzEnv(t *testing.T, text string) (e *Env, regexps bool) {
	dir := t.TempDir()
	for _, n := range []string{"list.txt", "re.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e = New(dir)
	if err := e.LoadData(DataSpec{DestFile: "list.txt", Type: "string"}); err != nil {
		t.Fatalf("string data file: %v", err)
	}
	return e, e.LoadData(DataSpec{DestFile: "re.txt", Type: "regexp"}) == nil
}

func foldOf(name string) func(string) string {
	switch name {
	case "Upper":
		return strings.ToUpper
	case "Lower":
		return strings.ToLower
	}
	return func(s string) string { return s }
}

// Expressions over data files, with attacker strings in the event, give
// the same result natively, in the expr VM, and by a plain loop over the
// file's lines; the string helpers give what the standard library does.
func FuzzDataHelpers(f *testing.F) {
	for i, s := range dataSeeds {
		f.Add(s.lits, s.s, uint8(i))
	}
	f.Add("(?i)sqlmap\n\\bnikto\\b\n", "Nikto/2.1.6", uint8(3))
	f.Add("/%2e%2e/\n", "/%2E%2E/%2e%2e/etc/passwd", uint8(9))
	f.Fuzz(func(t *testing.T, text, s string, sel uint8) {
		e, regexps := fuzzEnv(t, text)
		lits := dataLines(text)
		folds := []string{"", "Upper", "Lower"}
		ops := []string{"contains", "startsWith", "endsWith", "=="}
		fold, op := folds[int(sel)%len(folds)], ops[int(sel/3)%len(ops)]
		wrap := func(x string) string {
			if fold == "" {
				return x
			}
			return fold + "(" + x + ")"
		}
		fn := foldOf(fold)
		want := false
		for _, l := range lits {
			a, b := fn(s), fn(l)
			switch op {
			case "contains":
				want = want || strings.Contains(a, b)
			case "startsWith":
				want = want || strings.HasPrefix(a, b)
			case "endsWith":
				want = want || strings.HasSuffix(a, b)
			case "==":
				want = want || a == b
			}
		}
		exprs := []struct {
			src  string
			want any
		}{
			{"any(File('list.txt'), {" + wrap("evt.Meta.x") + " " + op + " " + wrap("#") + "})", want},
			{"Upper(evt.Meta.x)", strings.ToUpper(s)},
			{"Lower(evt.Meta.x)", strings.ToLower(s)},
			{"TrimSpace(evt.Meta.x)", strings.TrimSpace(s)},
			{"QueryUnescape(evt.Meta.x)", queryUnescape(s)},
		}
		if regexps {
			match := false
			for _, l := range lits {
				if !strings.HasPrefix(l, "#") {
					match = match || regexp.MustCompile(l).MatchString(s)
				}
			}
			exprs = append(exprs, struct {
				src  string
				want any
			}{"RegexpInFile(evt.Meta.x, 're.txt')", match})
		}
		vars := map[string]any{"evt": &detect.Event{}}
		for _, x := range exprs {
			p, err := e.CompileEvt(x.src, vars)
			if err != nil {
				t.Fatalf("%s: %v", x.src, err)
			}
			evt := detect.NewEvent(detect.Line{Raw: s})
			evt.Meta["x"] = s
			// Twice: the second run reads the Env's caches.
			for range 2 {
				got, err := e.Run(p.VM, map[string]any{"evt": evt})
				if err != nil || got != x.want {
					t.Fatalf("%s with x=%q: VM %v (%v), want %v", x.src, s, got, err, x.want)
				}
				var m Memo
				var native any
				var decided bool
				if _, isBool := x.want.(bool); isBool {
					native, decided = p.Bool(&m, evt)
				} else {
					native, decided = p.String(&m, evt)
				}
				if decided && native != x.want {
					t.Fatalf("%s with x=%q: native %v, want %v", x.src, s, native, x.want)
				}
			}
		}
	})
}

func queryUnescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}
