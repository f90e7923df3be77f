package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/moatsec/moat/detect/engine"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/model"
)

// hostile is what an attacker can put in a log line, a hub file or a
// User-Agent: an OSC that retitles the terminal, a bell, clear-screen, a
// bidi override, a C1 control, DEL, a byte of invalid UTF-8, a literal
// backslash sequence that must not read as an escaped ESC, and a tab that
// would break table columns.
const (
	hostile = "evil\x1b]0;pwned\x07\x1b[2J\u202eEVIL\u0085\x7f\xff\\x1b\tEND"
	// hostileShown is how table and raw output must show it.
	hostileShown = `evil\x1b]0;pwned\x07\x1b[2J\u202eEVIL\u0085\x7f\xff\\x1b\tEND`
	// hostileJSON is hostile in valid UTF-8: JSON cannot carry invalid
	// bytes, every other rune it must carry exactly.
	hostileJSON = "evil\x1b]0;pwned\x07\x1b[2J\u202eEVIL\u0085\x7f\\x1b\tEND"
)

func TestEsc(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"crowdsecurity/ssh-bf 198.51.100.7", "crowdsecurity/ssh-bf 198.51.100.7"},
		{"Mozilla/5.0 (X11; Linux) ünïcødé ✓ 日本", "Mozilla/5.0 (X11; Linux) ünïcødé ✓ 日本"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"a\tb\nc\rd\x00e\x07f", `a\tb\nc\rd\x00e\x07f`},
		{"del\x7f", `del\x7f`},
		{"c1 \u0080 \u009b \u009f", `c1 \u0080 \u009b \u009f`},
		{"bidi \u202a\u202b\u202c\u202d\u202e \u2066\u2067\u2068\u2069", `bidi \u202a\u202b\u202c\u202d\u202e \u2066\u2067\u2068\u2069`},
		{"zero\u200bwidth line\u2028sep", `zero\u200bwidth line\u2028sep`},
		{"bad \xff\xfe utf8 \xe2\x80", `bad \xff\xfe utf8 \xe2\x80`},
		{`C:\x1b`, `C:\\x1b`},
		{`\`, `\\`},
		{"plane 1 \U0001f600 private \U000f0000", `plane 1 ` + "\U0001f600" + ` private \U000f0000`},
		{hostile, hostileShown},
	} {
		if got := esc(c.in); got != c.want {
			t.Errorf("esc(%q)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

// Escaping must be reversible: two different inputs never show alike.
func FuzzEscInjective(f *testing.F) {
	f.Add("\x1b", `\x1b`)
	f.Add("\\", `\`)
	f.Add("\xff", "\u00ff")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a != b && esc(a) == esc(b) {
			t.Fatalf("esc(%q) == esc(%q) == %s", a, b, esc(a))
		}
		if err := terminalSafe(esc(a)); err != nil {
			t.Fatalf("esc(%q) = %q: %v", a, esc(a), err)
		}
	})
}

// terminalSafe says whether out can go to a terminal: valid UTF-8 with no
// rune but newline and space that is not printable.
func terminalSafe(out string) error {
	for i, r := range out {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(out[i:]); n == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if r != '\n' && r != ' ' && !unicode.IsPrint(r) {
			return fmt.Errorf("raw %U at byte %d", r, i)
		}
	}
	return nil
}

// jsonCarries says whether some string in the JSON document out is want.
func jsonCarries(out, want string) (bool, error) {
	dec := json.NewDecoder(strings.NewReader(out))
	found := false
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			found = found || v == want
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				found = found || k == want
				walk(e)
			}
		}
	}
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return false, err
		}
		walk(v)
	}
	return found, nil
}

func TestRenderersEscapeUntrustedText(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		// rawShows: -o raw prints one of the hostile strings.
		rawShows bool
		render   func(w io.Writer, format, h string) error
	}{
		{"alerts list", false, func(w io.Writer, format, h string) error {
			return writeAlertList(w, format, []api.Alert{{ID: 7, Scope: h, Value: h, Scenario: h, EventsCount: 3, CreatedAt: now}})
		}},
		{"alerts inspect", true, func(w io.Writer, format, h string) error {
			return writeAlertOut(w, format, api.Alert{
				ID: 7, Scenario: h, ScenarioVersion: h, Message: h, Scope: h, Value: h,
				Meta: map[string]string{h: h}, Labels: map[string]string{"type": h},
				Events: []map[string]string{{"log": h}}, Decisions: []int64{1},
			})
		}},
		{"decisions list", true, func(w io.Writer, format, h string) error {
			return writeDecisions(w, format, []api.Decision{
				{ID: 1, Value: h, Scope: h, Type: h, Origin: h, Scenario: h, AlertID: 7, Until: now.Add(time.Hour)},
				{ID: 2, Value: "198.51.100.7", Scope: "Ip", Type: "ban", Origin: "cli", Reason: h},
			})
		}},
		{"allowlist list", false, func(w io.Writer, format, h string) error {
			return writeAllowlist(w, format, []decision.AllowEntry{{Value: netip.MustParsePrefix("198.51.100.0/24"), Reason: h, Created: now}})
		}},
		{"bouncers list", true, func(w io.Writer, format, h string) error {
			return writeBouncers(w, format, []api.Bouncer{{Name: h, CreatedAt: now, LastSeen: now, LastIP: h, UserAgent: h}})
		}},
		{"status", false, func(w io.Writer, format, h string) error {
			return writeStatusOut(w, format, api.Status{
				Version:  h,
				Sources:  []api.Source{{Name: h, Kind: h, Lines: 3, Error: h}},
				Backends: []api.Backend{{Name: h, Mode: h, Entries: 2, Error: h}},
				Counters: map[string]int64{h: 1},
			}, now)
		}},
		{"explain", false, func(w io.Writer, format, h string) error {
			x := engine.Explanation{
				Parsed: true,
				Stages: []engine.StageExplanation{{Stage: h, Nodes: []engine.NodeExplanation{{Parser: h, Success: true, Set: map[string]string{h: h},
					Groks: []engine.GrokExplanation{{Pattern: h, Tier: "fast", Served: "regexp"}}}}}},
				Alerts: []model.Alert{{Scenario: h, Value: h, EventsCount: 5}},
			}
			return writeExplanation(w, format, h, x)
		}},
		{"replay", true, func(w io.Writer, format, h string) error {
			spill, err := newAlertSpill()
			if err != nil {
				return err
			}
			defer spill.Close()
			spill.add([]model.Alert{{Scenario: h, Scope: h, Value: h, EventsCount: 5, Start: now, Stop: now}})
			return spill.write(w, format)
		}},
		{"replay warnings", false, func(w io.Writer, _, h string) error {
			warnUntimed(w, []scenario.ScenarioStats{{Name: h, Untimed: 3}})
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, format := range []string{"table", "raw"} {
				var out bytes.Buffer
				if err := c.render(&out, format, hostile); err != nil {
					t.Fatal(err)
				}
				if err := terminalSafe(out.String()); err != nil {
					t.Errorf("-o %s: %v in\n%s", format, err, out.String())
				}
				if (format == "table" || c.rawShows) && !strings.Contains(out.String(), hostileShown) {
					t.Errorf("-o %s does not show %s:\n%s", format, hostileShown, out.String())
				}
			}
			if c.name == "replay warnings" {
				return
			}
			var out bytes.Buffer
			if err := c.render(&out, "json", hostileJSON); err != nil {
				t.Fatal(err)
			}
			if ok, err := jsonCarries(out.String(), hostileJSON); err != nil || !ok {
				t.Errorf("-o json does not carry the value exactly (%v):\n%s", err, out.String())
			}
		})
	}
}

// Errors reach the terminal too: a path or a daemon's message can carry
// what a log line or a hub file put there.
func TestErrorsEscapeUntrustedText(t *testing.T) {
	code, out, errOut := runMoat(t, "", "config", "check", "--config", t.TempDir()+"/"+hostile+".yaml")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d (%s)", code, exitUsage, errOut)
	}
	if err := terminalSafe(out + errOut); err != nil {
		t.Errorf("%v in %q", err, errOut)
	}
	if !strings.Contains(errOut, hostileShown) {
		t.Errorf("stderr %q does not show %s", errOut, hostileShown)
	}
}
