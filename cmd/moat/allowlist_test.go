package main

import (
	"strings"
	"testing"
)

// One "moat allowlist add 0.0.0.0/0" used to lift every ban and disable
// banning. Entries wider than the ban limits now need --allow-wide.
func TestAllowlistAddWidthLimit(t *testing.T) {
	cfg, _ := adminDaemon(t)
	if code, _, errOut := runMoat(t, "", "decisions", "add", "--ip", "198.18.9.9", "-c", cfg); code != exitOK {
		t.Fatalf("decisions add: %d %s", code, errOut)
	}
	banned := func() bool {
		_, out, _ := runMoat(t, "", "decisions", "list", "-c", cfg, "-o", "raw")
		return strings.Contains(out, "198.18.9.9\n")
	}
	for _, c := range []struct {
		args []string
		code int
		// msg lists what stderr must name: the limit and the override.
		msg []string
		// lifts: the 198.18.9.9 ban is gone afterwards.
		lifts bool
	}{
		{[]string{"0.0.0.0/0"}, exitUsage, []string{"0.0.0.0/0", "/8", "--allow-wide"}, false},
		{[]string{"::/0"}, exitUsage, []string{"::/0", "/32", "--allow-wide"}, false},
		{[]string{"198.0.0.0/7"}, exitUsage, []string{"/8", "--allow-wide"}, false},
		{[]string{"2001:db8::/48"}, exitOK, nil, false},
		{[]string{"0.0.0.0/0", "--allow-wide"}, exitOK, nil, true},
	} {
		args := append([]string{"allowlist", "add", "--reason", "test", "-c", cfg, "-o", "table"}, c.args...)
		code, _, errOut := runMoat(t, "", args...)
		if code != c.code {
			t.Fatalf("%v: exit %d (%s), want %d", c.args, code, errOut, c.code)
		}
		for _, m := range c.msg {
			if !strings.Contains(errOut, m) {
				t.Errorf("%v: stderr %q does not name %q", c.args, errOut, m)
			}
		}
		if got := !banned(); got != c.lifts {
			t.Errorf("%v: ban lifted = %v, want %v", c.args, got, c.lifts)
		}
	}
}
