package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// esc makes s safe to print on a terminal. Much of what moat shows came
// from an attacker: log lines, alert meta and messages, scenario names from
// downloaded hub files, bouncer user agents. Raw, an ESC sequence could
// rewrite the screen, retitle the window or hide a line, and a bidi
// override could make one address read as another.
//
// Every rune that is not printable is written visibly: C0 controls and DEL
// as \xNN (\t, \n and \r in their short forms), C1 controls, bidi
// overrides and other invisible or format runes as \uNNNN, each byte of
// invalid UTF-8 as \xNN. A backslash becomes \\, so the output maps back
// to one input only. Printable text, non-ASCII letters included, passes
// through unchanged.
//
// Table and text output escape every string that did not come from moat
// itself. -o json stays exact (JSON has its own escaping). -o raw escapes
// too: raw output is for scripts, which read values line by line, and an
// embedded newline or escape sequence would break them the same way; the
// values raw prints (addresses, IDs, keys, names) contain nothing to
// escape, so scripts see them unchanged.
func esc(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == ' ' || unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += n
	}
	return b.String()
}

// needsEscape is esc's fast path: plain printable ASCII, the common case,
// is returned as it is.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return true
		}
	}
	return false
}
