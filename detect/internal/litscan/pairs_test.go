package litscan

import (
	"strings"
	"testing"
)

// pairsAgree checks Find against strings.Contains: a member is ruled out
// only when s lacks one of its literals, and kept when s holds them all.
func pairsAgree(t *testing.T, p *Pairs, required [][]string, s string) {
	t.Helper()
	got := p.Find(s)
	for i, lits := range required {
		all, keyed := true, p.lits[i].lit
		for _, l := range lits {
			all = all && strings.Contains(s, l)
		}
		kept := got&(1<<i) != 0
		if kept != strings.Contains(s, keyed) {
			t.Errorf("%q: member %d (key %q) kept %v, strings.Contains says %v", s, i, keyed, kept, !kept)
		}
		if all && !kept {
			t.Errorf("%q: member %d ruled out though it holds all of %q", s, i, lits)
		}
	}
}

func TestPairs(t *testing.T) {
	required := [][]string{
		{"Failed ", " from ", " port "},
		{"Invalid user", " from "},
		{" not allowed because not listed in AllowUsers", "User "},
		{"refused connect from"},
		{"aa"},
		{"Invalid user"}, // the same literal for two members
	}
	p := NewPairs(required)
	for _, s := range []string{
		"", "a", "aa", "aaa",
		"Failed password for root from 198.18.0.1 port 22 ssh2",
		"Invalid user admin from 198.18.0.1 port 22",
		"User bob from 198.18.0.1 not allowed because not listed in AllowUsers",
		"refused connect from host (198.18.0.1)",
		"Invalid use", "nvalid user", "xInvalid userx Failed  from  port ",
	} {
		pairsAgree(t, p, required, s)
	}
	if NewPairs([][]string{{"a"}}) != nil {
		t.Error("a member with no literal of two bytes must get no scanner")
	}
	if NewPairs(make([][]string, MaxPairs+1)) != nil {
		t.Errorf("more than %d members must get no scanner", MaxPairs)
	}
	// The key is the rarest pair: a capital, not the spaces around it.
	if p.lits[0].lit != "Failed " || p.lits[0].off != 0 {
		t.Errorf("member 0 keyed by %q at %d, want \"Failed \" at 0", p.lits[0].lit, p.lits[0].off)
	}
}

func FuzzPairs(f *testing.F) {
	f.Add("Invalid user x from 198.18.0.1", "Invalid user|from ;Failed ;xx")
	f.Add("aaaa", "aa;aaa|aa;ab")
	f.Fuzz(func(t *testing.T, s, joined string) {
		var required [][]string
		for _, m := range strings.Split(joined, ";") {
			required = append(required, strings.Split(m, "|"))
		}
		if p := NewPairs(required); p != nil {
			pairsAgree(t, p, required, s)
		}
	})
}
