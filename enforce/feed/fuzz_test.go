package feed

import (
	"errors"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/model"
)

// A feed is whatever its server sends. Whatever it is, Parse returns
// canonical, unique entries, no more than the input has lines, or an
// error and no entry.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24 ; SBL1\n203.0.113.7\n",
		"# c\n\n2001:db8::/32\n::ffff:1.2.3.4\n",
		"<html>oops</html>",
		"1.2.3.4/33\nfe80::1%eth0\n10.0.0.1/8\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, skipped, err := Parse(strings.NewReader(in), 1<<16)
		if err != nil {
			if len(entries) != 0 {
				t.Fatalf("error %v with %d entries", err, len(entries))
			}
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrGarbage) && !strings.Contains(err.Error(), "too long") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if skipped < 0 {
			t.Fatalf("skipped %d", skipped)
		}
		seen := map[string]bool{}
		for _, p := range entries {
			if p != model.Canonical(p) || !p.IsValid() {
				t.Fatalf("entry %s is not canonical", p)
			}
			if seen[p.String()] {
				t.Fatalf("entry %s twice", p)
			}
			seen[p.String()] = true
		}
		if len(entries) > strings.Count(in, "\n")+1 {
			t.Fatalf("%d entries from %d lines", len(entries), strings.Count(in, "\n")+1)
		}
	})
}
