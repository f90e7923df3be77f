package litscan

import (
	"strings"
	"testing"
)

// acAgrees checks the literals ac finds in s against strings.Contains,
// over ASCII-lowered text when fold.
func acAgrees(t *testing.T, ac *Scanner, lits []string, s string, fold bool) {
	t.Helper()
	hits, ascii := ac.Find(s, nil)
	if fold && !ascii {
		return
	}
	if !fold && ac.Any(s) != (len(hits) > 0) {
		t.Errorf("%q: Any says %v, Find found %d", s, ac.Any(s), len(hits))
	}
	found := map[int]bool{}
	for _, i := range hits {
		found[i] = true
	}
	for i, l := range lits {
		in, want := s, l
		if fold {
			in, want = asciiLower(in), asciiLower(want)
		}
		if found[i] != strings.Contains(in, want) {
			t.Errorf("%q (fold %v): literal %q found %v, strings.Contains says %v", s, fold, l, found[i], !found[i])
		}
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] = LowerASCII(b[i])
	}
	return string(b)
}

func TestScanner(t *testing.T) {
	lits := []string{"he", "she", "his", "hers", "/TMUI/", "TMUI", "a", "/.%2E/", "she", "ÉTÉ"}
	for _, fold := range []bool{false, true} {
		ac := New(lits, fold)
		for _, s := range []string{"", "ushers", "/tmui/x", "/TMUI/LOGIN", "xyz", "aaa", "/.%2e/.%2E/", "hishe", "HERS", "été ÉTÉ"} {
			acAgrees(t, ac, lits, s, fold)
		}
	}
	if New([]string{"a", ""}, false) != nil {
		t.Error("an empty literal must not get an automaton")
	}
	if _, ascii := New(lits, true).Find("/é", nil); ascii {
		t.Error("a value with a non-ASCII byte reported as ASCII")
	}
}

func FuzzScanner(f *testing.F) {
	f.Add("/wp-login.php?x=1", "wp-|php|x=|/", false)
	f.Add("aaaa", "aa|a|aaa", false)
	f.Add("/TMUI/Login", "/tmui/|LOGIN", true)
	f.Fuzz(func(t *testing.T, s, joined string, fold bool) {
		lits := strings.Split(joined, "|")
		if ac := New(lits, fold); ac != nil {
			acAgrees(t, ac, lits, s, fold)
		}
	})
}
