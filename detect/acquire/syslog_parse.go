package acquire

import (
	"bytes"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// syslogMsg is one received message split into the fields RFC 3164 and
// RFC 5424 share. Every field is the sender's text: none is trusted.
type syslogMsg struct {
	pri     int // -1 when the message has no (valid) PRI
	rfc5424 bool
	ts      time.Time // zero when the message has none or it did not parse
	host    string    // "" when absent
	app     string    // the tag (3164) or APP-NAME (5424); "" when absent
	pid     string    // "" when absent
	msg     []byte    // aliases the input
	// malformed: the message followed neither RFC (no PRI, a broken
	// RFC 5424 header); what could be read of it is still handed on.
	malformed bool
}

// parseSyslog splits one message, as received (one datagram or one TCP
// frame). now is when it arrived: RFC 3164 timestamps carry no year and
// take the one that puts them nearest before now. It never fails: what
// it cannot split is the message text.
func parseSyslog(b []byte, now time.Time) syslogMsg {
	m := syslogMsg{pri: -1}
	b = bytes.TrimRight(b, "\r\n\x00")
	rest, pri, ok := parsePRI(b)
	if !ok {
		m.malformed = true
		rest = b
	}
	m.pri = pri
	if len(rest) >= 2 && rest[0] == '1' && rest[1] == ' ' {
		if parse5424(rest[2:], &m) {
			return m
		}
		// A broken header: read on as RFC 3164, which finds no
		// timestamp and keeps the text as the message.
		m = syslogMsg{pri: pri, malformed: true}
	}
	parse3164(rest, now, &m)
	return m
}

// parsePRI reads "<N>" with N in 0..191.
func parsePRI(b []byte) (rest []byte, pri int, ok bool) {
	if len(b) < 3 || b[0] != '<' {
		return b, -1, false
	}
	n, i := 0, 1
	for ; i < len(b) && i <= 4 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
	}
	if i == 1 || i > 4 || i >= len(b) || b[i] != '>' || n > 191 {
		return b, -1, false
	}
	return b[i+1:], n, true
}

// cutToken cuts b at the first space: the token and what follows it;
// more is false when b has no space (the token is all of b).
func cutToken(b []byte) (tok, rest []byte, more bool) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil, false
	}
	return b[:i], b[i+1:], true
}

// parse5424 reads "TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]",
// the part after "VERSION SP". It reports false when the header is broken.
func parse5424(b []byte, m *syslogMsg) bool {
	var f [5][]byte
	for i := range f {
		var more bool
		f[i], b, more = cutToken(b)
		if len(f[i]) == 0 || !more && i < 4 {
			return false
		}
		if i == 4 && !more {
			return false // the structured data (at least "-") is missing
		}
	}
	m.rfc5424 = true
	if ts := string(f[0]); ts != "-" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return false
		}
		m.ts = t
	}
	nil5424 := func(b []byte) string {
		if string(b) == "-" {
			return ""
		}
		return string(b)
	}
	m.host, m.app, m.pid = nil5424(f[1]), nil5424(f[2]), nil5424(f[3])
	n, ok := skipSD(b)
	if !ok {
		return false
	}
	b = b[n:]
	if len(b) > 0 {
		if b[0] != ' ' {
			return false
		}
		b = b[1:]
	}
	m.msg = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // the BOM RFC 5424 puts before UTF-8 text
	return true
}

// skipSD returns the length of the STRUCTURED-DATA at the start of b:
// "-", or one or more "[ID PARAM="VALUE" ...]" elements whose values
// escape '"', '\' and ']' with a backslash.
func skipSD(b []byte) (int, bool) {
	if len(b) > 0 && b[0] == '-' {
		return 1, true
	}
	i := 0
	for i < len(b) && b[i] == '[' {
		quoted := false
		for i++; ; i++ {
			if i >= len(b) {
				return 0, false
			}
			c := b[i]
			if quoted && c == '\\' {
				i++
				continue
			}
			if c == '"' {
				quoted = !quoted
			}
			if c == ']' && !quoted {
				i++
				break
			}
		}
	}
	return i, i > 0
}

// parse3164 reads "[TIMESTAMP SP [HOSTNAME SP]] [TAG[[PID]]: ]MSG".
// Senders differ: some omit the hostname, some the timestamp, some use
// an RFC 3339 timestamp; each part is taken only where it is
// unambiguous, and the rest is the message.
func parse3164(b []byte, now time.Time, m *syslogMsg) {
	if ts, n := parse3164Time(b, now); n > 0 {
		m.ts = ts
		b = b[n:]
		// A hostname is a token followed by a space that does not look
		// like a tag ("sshd[1]:", "sshd:"), which hostname-less senders
		// put here.
		if tok, rest, more := cutToken(b); more && len(tok) > 0 && tok[len(tok)-1] != ':' && bytes.IndexByte(tok, '[') < 0 {
			m.host = string(tok)
			b = rest
		}
	}
	m.app, m.pid, b = parseTag(b)
	m.msg = b
}

// parse3164Time reads "Mmm dd hh:mm:ss " (day space-padded or not) or an
// RFC 3339 timestamp followed by a space, returning the time and the
// bytes used (0 when there is none).
func parse3164Time(b []byte, now time.Time) (time.Time, int) {
	if len(b) > 20 && b[4] == '-' && b[0] >= '0' && b[0] <= '9' {
		tok, _, more := cutToken(b)
		if t, err := time.Parse(time.RFC3339Nano, string(tok)); err == nil && more {
			return t, len(tok) + 1
		}
		return time.Time{}, 0
	}
	// "Jan  2 15:04:05 ", "Jan 02 15:04:05 " or "Jan 2 15:04:05 ".
	if len(b) < 15 || b[3] != ' ' {
		return time.Time{}, 0
	}
	i := 4
	if b[i] == ' ' {
		i++ // a space-padded day
	}
	j := i
	for j < len(b) && j < i+2 && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == i || j+10 > len(b) || b[j] != ' ' || b[j+9] != ' ' {
		return time.Time{}, 0
	}
	text := string(b[:3]) + " " + string(b[i:j]) + " " + string(b[j+1:j+9])
	t, err := time.ParseInLocation("Jan 2 15:04:05", text, now.Location())
	if err != nil {
		return time.Time{}, 0
	}
	// The year is the one that puts the time nearest before now; a
	// sender's clock a little ahead stays in this year.
	t = t.AddDate(now.Year(), 0, 0)
	if t.After(now.Add(48 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	return t, j + 10
}

// parseTag reads "TAG: ", "TAG[PID]: " or "TAG[PID] " at the start of b;
// without one, b is all message.
func parseTag(b []byte) (app, pid string, rest []byte) {
	i := 0
	for i < len(b) && i <= 48 && b[i] > ' ' && b[i] < 0x7f && b[i] != '[' && b[i] != ':' && b[i] != ']' {
		i++
	}
	if i == 0 || i > 48 || i >= len(b) {
		return "", "", b
	}
	tag := string(b[:i])
	switch b[i] {
	case ':':
		return tag, "", trimOneSpace(b[i+1:])
	case '[':
		j := bytes.IndexByte(b[i:], ']')
		if j < 0 || j > 24 {
			return "", "", b
		}
		p := string(b[i+1 : i+j])
		after := b[i+j+1:]
		switch {
		case len(after) > 0 && after[0] == ':':
			return tag, p, trimOneSpace(after[1:])
		case len(after) > 0 && after[0] == ' ':
			return tag, p, after[1:]
		}
	}
	return "", "", b
}

func trimOneSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

// syslogLineLayout is the timestamp of the lines built: what rsyslog
// writes to /var/log/auth.log and the journal source writes too.
const syslogLineLayout = "Jan 02 15:04:05"

// line builds the text the hub's syslog parsers expect,
// "Jan 02 15:04:05 HOST PROG[PID]: MESSAGE", as CrowdSec's syslog
// datasource hands on. Every header field is the sender's, so each is
// checked against what the parsers' grok takes for it (SYSLOGHOST, PROG,
// POSINT) and replaced when it does not fit: a field carrying a space or
// a colon would shift the message, and with it the address a parser
// takes from the message. Control characters in the message are escaped
// as rsyslog does ("#012" for a newline) so one message stays one line.
// recv stands in for a missing timestamp.
func (m *syslogMsg) line(recv time.Time) string {
	ts := m.ts
	if ts.IsZero() {
		ts = recv
	}
	var sb strings.Builder
	sb.Grow(len(syslogLineLayout) + len(m.host) + len(m.app) + len(m.pid) + len(m.msg) + 16)
	sb.WriteString(ts.In(recv.Location()).Format(syslogLineLayout))
	sb.WriteByte(' ')
	if safeHost(m.host) {
		sb.WriteString(m.host)
	} else {
		sb.WriteString("unknownhost")
	}
	sb.WriteByte(' ')
	if safeProg(m.app) {
		sb.WriteString(m.app)
	} else {
		sb.WriteString("unknown")
	}
	if posInt(m.pid) {
		sb.WriteByte('[')
		sb.WriteString(m.pid)
		sb.WriteByte(']')
	}
	sb.WriteString(": ")
	writeEscaped(&sb, m.msg)
	return sb.String()
}

// safeHost reports whether h reads as exactly one SYSLOGHOST: an address,
// or a hostname of dot-separated labels as the hub's HOSTNAME has them.
func safeHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// safeProg reports whether p is one PROG token (printable ASCII without
// space, '[' and ']'), and holds no ':' which would end the header early.
func safeProg(p string) bool {
	if p == "" || len(p) > 48 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '[' || c == ']' || c == ':' {
			return false
		}
	}
	return true
}

// posInt reports whether s is a process id as POSINT reads it.
func posInt(s string) bool {
	if s == "" || len(s) > 10 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// writeEscaped writes b as valid UTF-8, control characters as "#ooo".
func writeEscaped(sb *strings.Builder, b []byte) {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				sb.WriteByte('#')
				sb.WriteByte('0' + c>>6)
				sb.WriteByte('0' + c>>3&7)
				sb.WriteByte('0' + c&7)
			} else {
				sb.WriteByte(c)
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:n])
		}
		b = b[n:]
	}
}
