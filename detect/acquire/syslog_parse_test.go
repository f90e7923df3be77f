package acquire

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatsec/moat/detect"
)

var syslogNow = time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)

// TestSyslogParse: the line built for each shape of message senders use,
// and for broken or hostile ones.
func TestSyslogParse(t *testing.T) {
	for _, tc := range []struct {
		in, want  string
		malformed bool
	}{
		// RFC 3164 as logger, rsyslog and most devices send it.
		{"<13>Dec  7 03:59:58 web1 sshd[4242]: " + sshdFailure, "Dec 07 03:59:58 web1 sshd[4242]: " + sshdFailure, false},
		{"<13>Dec 7 03:59:58 web1 sshd: hello", "Dec 07 03:59:58 web1 sshd: hello", false},
		{"<13>Dec 17 03:59:58 web1 postfix/smtpd[7]: x", "Dec 17 03:59:58 web1 postfix/smtpd[7]: x", false},
		// No hostname after the timestamp.
		{"<13>Dec  7 03:59:58 sshd[1]: x", "Dec 07 03:59:58 unknownhost sshd[1]: x", false},
		// An RFC 3339 timestamp in the BSD layout (rsyslog's forward format).
		{"<13>2026-12-07T03:59:58.5+00:00 web1 sshd[1]: x", "Dec 07 03:59:58 web1 sshd[1]: x", false},
		// No timestamp: the receive time stands in.
		{"<13>sshd[1]: x", "Dec 07 04:00:00 unknownhost sshd[1]: x", false},
		{"<13>just text", "Dec 07 04:00:00 unknownhost unknown: just text", false},
		// Last year's December seen in January is not next year's.
		{"<13>Dec 31 23:59:59 h a: x", "Dec 31 23:59:59 h a: x", false},
		// RFC 5424 as logger sends it, with structured data, and without.
		{`<13>1 2026-12-07T03:59:58.175246+00:00 web1 sshd 4242 - [timeQuality tzKnown="1" isSynced="0"] ` + sshdFailure, "Dec 07 03:59:58 web1 sshd[4242]: " + sshdFailure, false},
		{"<13>1 2026-12-07T03:59:58Z web1 sshd - ID47 - \xef\xbb\xbfhello", "Dec 07 03:59:58 web1 sshd: hello", false},
		{`<13>1 - - - - - [a b="c\]d" e="\"f"][g h="i"]`, "Dec 07 04:00:00 unknownhost unknown: ", false},
		{"<13>1 2026-12-07T03:59:58Z h app - - -", "Dec 07 03:59:58 h app: ", false},
		// Broken RFC 5424 headers: the text after the PRI is the message.
		{"<13>1 2026-13-07T03:59:58Z h app - - - x", "Dec 07 04:00:00 unknownhost unknown: 1 2026-13-07T03:59:58Z h app - - - x", true},
		{`<13>1 - h app - - [unterminated x`, "Dec 07 04:00:00 unknownhost unknown: 1 - h app - - [unterminated x", true},
		{"<13>1 - h", "Dec 07 04:00:00 unknownhost unknown: 1 - h", true},
		// No PRI, a PRI out of range.
		{"Dec  7 03:59:58 h sshd[1]: x", "Dec 07 03:59:58 h sshd[1]: x", true},
		{"<192>x", "Dec 07 04:00:00 unknownhost unknown: <192>x", true},
		{"<1", "Dec 07 04:00:00 unknownhost unknown: <1", true},
		// Header fields that would shift the line are replaced; control
		// characters are escaped so one message stays one line.
		{"<13>1 - bad_host app:x 12ab - - m", "Dec 07 04:00:00 unknownhost unknown: m", false},
		{"<13>1 - 198.51.100.99 a[b] 0 - - m", "Dec 07 04:00:00 198.51.100.99 unknown: m", false},
		{"<13>Dec  7 03:59:58 h sshd[1]: a\nDec  7 03:59:58 h sshd[1]: b\tc\x7f\xff", "Dec 07 03:59:58 h sshd[1]: a#012Dec  7 03:59:58 h sshd[1]: b#011c#177\uFFFD", false},
		{"<13>Dec  7 03:59:58 h sshd[1]: trailing\r\n\x00", "Dec 07 03:59:58 h sshd[1]: trailing", false},
	} {
		m := parseSyslog([]byte(tc.in), syslogNow)
		got := m.line(syslogNow)
		if tc.in == "<13>Dec 31 23:59:59 h a: x" && m.ts.Year() != 2025 {
			t.Errorf("%q: year %d, want 2025", tc.in, m.ts.Year())
		}
		if got != tc.want || m.malformed != tc.malformed {
			t.Errorf("%q:\n got %q (malformed %v)\nwant %q (malformed %v)", tc.in, got, m.malformed, tc.want, tc.malformed)
		}
	}
}

// TestSyslogHostCannotMoveSource: the host field is the sender's text; put
// address-shaped or line-shaped text there and the address the shipped
// parsers take is still the one in the message, or none.
func TestSyslogHostCannotMoveSource(t *testing.T) {
	p := shippedPipeline(t)
	for _, host := range []string{
		"198.51.100.99", "2001:db8::99", "x sshd[1]: " + sshdFailure, "web1:", "a]b", "-", "",
		strings.Repeat("a", 64) + ".b", "sshd[1]:",
	} {
		for _, in := range []string{
			"<13>Dec  7 03:59:58 " + host + " sshd[1]: " + sshdFailure,
			"<13>1 2026-12-07T03:59:58Z " + host + " sshd 1 - - " + sshdFailure,
		} {
			m := parseSyslog([]byte(in), syslogNow)
			evt := detect.NewEvent(detect.Line{Raw: m.line(syslogNow), Labels: map[string]string{"type": "syslog"}, Process: true})
			p.Parse(evt)
			if ip := evt.Meta["source_ip"]; ip != "" && ip != "198.51.100.7" {
				t.Errorf("%q -> %q: source_ip %q", in, evt.Line.Raw, ip)
			}
		}
	}
}

// FuzzSyslogMessage builds lines from arbitrary messages. Every line is
// valid UTF-8 without control characters; the shipped syslog parser reads
// it back into exactly the program and message the builder wrote; and an
// address it takes comes from the message, never from the host field:
// the same message with another host gives the same address.
func FuzzSyslogMessage(f *testing.F) {
	for _, s := range []string{
		"<13>Dec  7 03:59:58 web1 sshd[4242]: " + sshdFailure,
		`<13>1 2026-12-07T03:59:58.175246+00:00 web1 sshd 4242 - [timeQuality tzKnown="1" isSynced="0"] ` + sshdFailure,
		"<13>1 - 198.51.100.99 sshd 1 - - Invalid user a from 198.51.100.9 port 1",
		"<13>Dec  7 03:59:58 198.51.100.99 sshd[1]: Invalid user 198.51.100.8 from 2001:db8::1",
		"<0>", "<191>1 ", "no pri at all", "<13>Dec 32 25:61:61 h a: b",
	} {
		f.Add([]byte(s))
	}
	p := shippedPipeline(f)
	labels := map[string]string{"type": "syslog"}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := parseSyslog(data, syslogNow)
		line := m.line(syslogNow)
		if !utf8.ValidString(line) {
			t.Fatalf("%q: line %q is not UTF-8", data, line)
		}
		for _, c := range []byte(line) {
			if c < ' ' || c == 0x7f {
				t.Fatalf("%q: line %q holds a control character", data, line)
			}
		}
		evt := detect.NewEvent(detect.Line{Raw: line, Labels: labels, Process: true})
		p.Parse(evt)
		prog := "unknown"
		if safeProg(m.app) {
			prog = m.app
		}
		var msg strings.Builder
		writeEscaped(&msg, m.msg)
		if evt.Parsed["program"] != prog || evt.Parsed["message"] != msg.String() {
			t.Fatalf("%q: line %q parsed as program %q message %q, want %q and %q",
				data, line, evt.Parsed["program"], evt.Parsed["message"], prog, msg.String())
		}
		ip := evt.Meta["source_ip"]
		if ip != "" {
			checkSource(t, msg.String(), ip)
		}
		m.host = "other-host"
		evt2 := detect.NewEvent(detect.Line{Raw: m.line(syslogNow), Labels: labels, Process: true})
		p.Parse(evt2)
		if evt2.Meta["source_ip"] != ip {
			t.Fatalf("%q: the host field moved source_ip from %q to %q", data, evt2.Meta["source_ip"], ip)
		}
	})
}

// FuzzSyslogFrames splits an arbitrary TCP stream. The reader ends (no
// loop without progress), never returns a message over the maximum, and
// every message it returns is in the stream.
func FuzzSyslogFrames(f *testing.F) {
	for _, s := range []string{
		"<13>a\n12 <13>counted\n<13>b",
		"5 ab\n99999999999 x\n0 x\n",
		"300 " + strings.Repeat("y", 300) + "<13>next\n" + strings.Repeat("z", 200) + "\n",
		"10 short",
	} {
		f.Add([]byte(s))
	}
	const max = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), max)
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("%q: more messages than bytes", data)
			}
			msg, cut, err := fr.next()
			if err != nil {
				if err != io.EOF && !strings.Contains(err.Error(), io.ErrUnexpectedEOF.Error()) {
					t.Fatalf("%q: %v", data, err)
				}
				return
			}
			if len(msg) > max || cut && len(msg) != max {
				t.Fatalf("%q: message %q (cut %v)", data, msg, cut)
			}
			if !bytes.Contains(data, msg) {
				t.Fatalf("%q: message %q is not in the stream", data, msg)
			}
		}
	})
}

// BenchmarkSyslogLine: parsing a message and building its line, the
// listener's own work per message.
func BenchmarkSyslogLine(b *testing.B) {
	for _, in := range []string{
		"<38>Dec  7 04:00:00 web1 sshd[4242]: " + sshdFailure,
		`<38>1 2026-12-07T04:00:00.175246+00:00 web1 sshd 4242 - [timeQuality tzKnown="1" isSynced="0"] ` + sshdFailure,
	} {
		b.Run(in[4:5], func(b *testing.B) {
			msg := []byte(in)
			b.ReportAllocs()
			for b.Loop() {
				m := parseSyslog(msg, syslogNow)
				_ = m.line(syslogNow)
			}
		})
	}
}
