package acquire

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/packaging"
)

// shippedPipeline loads every parser moat ships, from the content the
// binary embeds, so the target follows the parsers as they change.
func shippedPipeline(tb testing.TB) *parse.Pipeline {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.CopyFS(dir, packaging.Files); err != nil {
		tb.Fatalf("extract shipped content: %v", err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "hub", "parsers", "*", "*", "*.yaml"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no shipped parsers: %v", err)
	}
	var files []parse.File
	for _, p := range paths {
		files = append(files, parse.File{Path: p, Stage: filepath.Base(filepath.Dir(filepath.Dir(p)))})
	}
	p, err := parse.Load(files, parse.Options{PatternDir: filepath.Join(dir, "patterns"), DataDir: tb.TempDir(), Year: 2026, LogTime: true})
	if err != nil {
		tb.Fatalf("load shipped parsers: %v", err)
	}
	return p
}

// hubIPv4 is the hub's IPV4, which netip does not parse when an octet has
// a leading zero.
var hubIPv4 = regexp.MustCompile(`^(?:(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})[.]){3}(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})$`)

// posint is a PID as the kernel numbers processes.
var posint = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)

// logTypes are the acquisition labels the shipped parsers tell apart.
var logTypes = []string{"syslog", "nginx", "apache2", "kernel", ""}

// checkSource fails unless ip is an address that occurs in line as a
// whole token: not carved out of a longer run of address characters.
func checkSource(t *testing.T, line, ip string) {
	t.Helper()
	// Two leniencies of the hub's patterns are tolerated here, as neither
	// shows in lines sshd, nginx or the kernel write and neither gets a
	// source banned (netip and the store refuse both): IPV4 takes octets
	// with leading zeros ("1.2.3.04"), and IPV6's "(?:%.+)?" takes the rest
	// of the line as a zone ("fe80::1%eth0 port 22 ssh2"). What must hold
	// is that the address text was not carved out of a longer one.
	if a, err := netip.ParseAddr(ip); err != nil && !hubIPv4.MatchString(ip) {
		t.Fatalf("%q: source_ip %q is not an address: %v", line, ip, err)
	} else if err == nil && a.Zone() != "" {
		ip, _, _ = strings.Cut(ip, "%")
	}
	for off := 0; ; {
		i := strings.Index(line[off:], ip)
		if i < 0 {
			t.Fatalf("%q: source_ip %q is not a token of the line", line, ip)
		}
		i += off
		if !continues(line[:i], true) && !continues(line[i+len(ip):], false) {
			return
		}
		off = i + 1
	}
}

// continues reports whether the text beside an address (before it when
// before is set, else after it) extends it: a hex digit or ':' next to
// it, or a '.' followed by a digit ("198.18.0.1.5"). A '.' ending a
// sentence does not.
func continues(s string, before bool) bool {
	if s == "" {
		return false
	}
	c, next := s[0], byte(0)
	if len(s) > 1 {
		next = s[1]
	}
	if before {
		c = s[len(s)-1]
		if len(s) > 1 {
			next = s[len(s)-2]
		}
	}
	hex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	return hex(c) || c == ':' || c == '.' && next >= '0' && next <= '9'
}

// FuzzShippedParsers runs raw bytes as a log file delivers them through
// the line splitter and the shipped parser chain. Every line handed on is
// one line of the input (no newline, at most the maximum length); parsing
// agrees with Process; and a source address the parsers extract is a
// valid address written in that line as a whole token.
func FuzzShippedParsers(f *testing.F) {
	for _, s := range []struct {
		data string
		typ  uint8
	}{
		{"Mar  1 00:00:00 web1 sshd[3095632]: Invalid user guest from 198.18.38.187 port 17744\n", 0},
		{"Mar  1 00:00:00 web1 sshd[1]: Failed password for invalid user admin from 2001:db8::7 port 22 ssh2\r\nMar  1 00:00:01 web1 sshd[1]: Failed password for root from 198.18.0.7 port 22 ssh2\n", 0},
		{"Mar  1 00:00:00 web1 sshd[1]: Invalid user 198.18.0.9 from 198.18.0.7 port 22\n", 0},
		{"Mar  1 00:00:00 web1 sshd[1]: Invalid user a from 198.18.0.9 from 198.18.0.7 port 22\n", 0},
		{"Mar  1 00:00:00 web1 sshd[1]: Connection closed by authenticating user root 2001:db8::1 port 22 [preauth]\n", 0},
		{"Mar  1 00:00:00 web1 sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.18.0.4  user=root\n", 0},
		{"Mar  1 00:00:00 fw kernel: [12345.678] IN=eth0 OUT= MAC=00:00 SRC=198.18.0.1 DST=198.18.0.2 LEN=40 TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=TCP SPT=1 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0\n", 0},
		{"2026-03-01T00:00:00+00:00 web1 sshd[7]: Invalid user x from 198.18.0.8 port 1\n", 0},
		{`198.18.241.36 - - [01/Mar/2026:00:00:00 +0000] "GET /../../etc/passwd HTTP/1.1" 404 1 "-" "curl/8"` + "\n", 1},
		{`2001:db8::1 - - [01/Mar/2026:00:00:00 +0000] "GET /x HTTP/1.1" 200 1 "-" "-" "198.18.0.5"` + "\n", 1},
		{`www.example.org:443 198.18.0.3 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"` + "\n", 2},
		{`198.18.0.3 - - [01/Mar/2026:00:00:00 +0000] "GET /a` + "\n" + `198.18.0.4 - - [01/Mar/2026:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`, 1},
	} {
		f.Add([]byte(s.data), s.typ)
	}
	p := shippedPipeline(f)
	const max = 512
	f.Fuzz(func(t *testing.T, data []byte, typ uint8) {
		labels := map[string]string{"type": logTypes[int(typ)%len(logTypes)]}
		sp := splitter{max: max}
		check := func(line []byte) {
			if bytes.IndexByte(line, '\n') >= 0 || len(line) > max {
				t.Fatalf("splitter handed on %q", line)
			}
			if !bytes.Contains(data, line) {
				t.Fatalf("line %q is not in the input", line)
			}
			raw := string(line)
			evt := detect.NewEvent(detect.Line{Raw: raw, Src: "fuzz", Module: KindFile, Labels: labels, Process: true})
			ok := p.Parse(evt)
			if ok != evt.Process {
				t.Fatalf("%q: Parse returned %v, Process %v", raw, ok, evt.Process)
			}
			if evt.Line.Raw != raw {
				t.Fatalf("parsing rewrote the line %q to %q", raw, evt.Line.Raw)
			}
			if ip := evt.Meta["source_ip"]; ok && ip != "" {
				checkSource(t, raw, ip)
			}
		}
		sp.feed(data, func(line []byte, _ bool, _ int) bool {
			check(line)
			return true
		})
		if l := sp.flush(); l != nil {
			check(l)
		}
	})
}

// journalFields is an entry for entryReader, as the journal holds it.
type journalFields struct {
	fields map[string]string
	usec   uint64
}

func (j journalFields) GetDataValue(f string) (string, error) {
	v, ok := j.fields[f]
	if !ok {
		return "", errors.New("no such field")
	}
	return v, nil
}

func (j journalFields) GetRealtimeUsec() (uint64, error) { return j.usec, nil }

// token reports whether s can stand in a syslog header as a host or
// identifier without changing how the line splits into fields.
func token(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// FuzzJournalEntry builds lines from journal entries with attacker-chosen
// fields. An entry without MESSAGE gives no line; otherwise the line is
// valid UTF-8 within the maximum length, has a source, keeps the
// acquisition's labels over journal fields, and, for an ordinary header
// and a message on one line, the shipped syslog parser takes the
// identifier and message back out exactly as the journal held them (a
// message cannot pose as another program's line).
func FuzzJournalEntry(f *testing.F) {
	for _, s := range []struct {
		msg, ident, pid, host, unit, comm string
		hasMsg                            bool
	}{
		{"Invalid user guest from 198.18.38.187 port 17744", "sshd", "3095632", "web1", "ssh.service", "sshd", true},
		{"Failed password for root from 2001:db8::7 port 22 ssh2", "sshd-session", "12", "web1", "ssh.service", "sshd-session", true},
		{"Accepted publickey for bob from 198.18.0.2 port 5 ssh2: ED25519 SHA256:x", "", "", "h", "", "sshd", true},
		{"line one\nJan 01 00:00:00 h sshd[1]: Invalid user x from 198.18.0.66 port 1", "sshd", "1", "h", "", "", true},
		{"", "sshd", "1", "h", "", "", true},
		{"\xff\xfe not utf-8 \xc3", "sshd", "1", "h", "", "", true},
		{"no message", "sshd", "1", "h", "", "", false},
		{"x", "a b", "1]: y", "h h", "", "", true},
	} {
		f.Add(s.msg, s.ident, s.pid, s.host, s.unit, s.comm, uint64(1772323200000000), uint16(200), s.hasMsg)
	}
	p := shippedPipeline(f)
	acq := map[string]string{"type": "syslog", "_HOSTNAME": "acquisition-wins"}
	f.Fuzz(func(t *testing.T, msg, ident, pid, host, unit, comm string, usec uint64, max uint16, hasMsg bool) {
		fields := map[string]string{}
		for k, v := range map[string]string{"SYSLOG_IDENTIFIER": ident, "_PID": pid, "_HOSTNAME": host, "_SYSTEMD_UNIT": unit, "_COMM": comm} {
			if v != "" {
				fields[k] = v
			}
		}
		if hasMsg {
			fields["MESSAGE"] = msg
		}
		usec %= 1 << 52 // journal timestamps are microseconds since 1970, far from overflow
		m := int(max)%1024 + 32
		var c counters
		r := newEntryReader(journalFields{fields, usec}, acq, nil, m, &c)
		l, ts := r.entry()
		if !hasMsg {
			if l.Src != "" || l.Raw != "" {
				t.Fatalf("entry without MESSAGE gave %+v", l)
			}
			return
		}
		if l.Src == "" {
			t.Fatalf("entry with MESSAGE gave no source: %+v", l)
		}
		if !utf8.ValidString(l.Raw) || len(l.Raw) > m+len(string(utf8.RuneError))*m {
			t.Fatalf("line %q: invalid UTF-8 or over %d bytes", l.Raw, m)
		}
		if !l.Time.Equal(ts) || !ts.Equal(time.UnixMicro(int64(usec))) {
			t.Fatalf("time %v / %v, want %v", l.Time, ts, time.UnixMicro(int64(usec)))
		}
		for k, v := range acq {
			if l.Labels[k] != v {
				t.Fatalf("label %s = %q, want the acquisition's %q", k, l.Labels[k], v)
			}
		}
		for _, k := range DefaultJournalFields() {
			if _, ok := acq[k]; !ok && l.Labels[k] != fields[k] {
				t.Fatalf("label %s = %q, want the journal's %q", k, l.Labels[k], fields[k])
			}
		}
		cut := c.cut.Load() > 0
		if !cut && !strings.HasSuffix(l.Raw, strings.ToValidUTF8(": "+msg, string(utf8.RuneError))) {
			t.Fatalf("line %q does not end with the message %q", l.Raw, msg)
		}
		evt := detect.NewEvent(l)
		ok := p.Parse(evt)
		if ok != evt.Process {
			t.Fatalf("%q: Parse returned %v, Process %v", l.Raw, ok, evt.Process)
		}
		if ok && evt.Meta["source_ip"] != "" {
			checkSource(t, l.Raw, evt.Meta["source_ip"])
		}
		wantIdent := ident
		if wantIdent == "" {
			wantIdent = comm
		}
		if cut || !token(wantIdent) || !token(host) || (pid != "" && !posint.MatchString(pid)) ||
			!utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r") || strings.TrimSpace(msg) != msg || msg == "" {
			return
		}
		if evt.Parsed["program"] != wantIdent || evt.Parsed["message"] != msg {
			t.Fatalf("%q: parsed program %q message %q, want %q %q", l.Raw, evt.Parsed["program"], evt.Parsed["message"], wantIdent, msg)
		}
	})
}

// refLines is the reference for a replay: the text gzip yields before it
// fails (or all of it), cut into lines as the splitter would, and whether
// the stream was whole.
func refLines(data []byte, max int) ([]string, bool) {
	text, whole := data, true
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		var out bytes.Buffer
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err == nil {
			_, err = io.Copy(&out, zr)
		}
		text, whole = out.Bytes(), err == nil
	}
	segs, rest := refSplit(text, max)
	var lines []string
	for _, s := range segs {
		lines = append(lines, s.Line)
	}
	if whole && rest != nil {
		lines = append(lines, string(rest))
	}
	return lines, whole
}

// FuzzReplayGzip replays plain, gzip, corrupt and truncated gzip input. A
// whole input yields exactly its lines and no error; a corrupt one yields a
// prefix of the lines gzip can recover, counts an error, and the replay
// still ends normally.
func FuzzReplayGzip(f *testing.F) {
	plain := "Mar  1 00:00:00 web1 sshd[1]: Invalid user guest from 198.18.38.187 port 17744\nMar  1 00:00:01 web1 sshd[1]: Failed password for root from 198.18.0.7 port 22 ssh2\n"
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	whole := gz(plain)
	f.Add([]byte(plain))
	f.Add(whole)
	f.Add(whole[:len(whole)/2])
	f.Add(whole[:len(whole)-4])
	f.Add(append(slices.Clone(whole), gz("second member\n")...))
	f.Add(append(slices.Clone(whole), 0, 0, 0))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	flipped := slices.Clone(whole)
	flipped[len(flipped)/2] ^= 0x40
	f.Add(flipped)
	f.Add(gz(strings.Repeat("x", 300) + "\r\nend"))
	const max = 128
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := openReplay([]string{"-"}, map[string]string{"type": "syslog"}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		r.MaxLineLength = max
		out := make(chan detect.Line, 64)
		done := make(chan error, 1)
		go func() { done <- r.Stream(context.Background(), out); close(out) }()
		var got []string
		for l := range out {
			if l.Src != "stdin" || l.Labels["type"] != "syslog" {
				t.Fatalf("line %+v: source or labels lost", l)
			}
			got = append(got, l.Raw)
		}
		if err := <-done; err != nil {
			t.Fatalf("Stream: %v", err)
		}
		want, ok := refLines(data, max)
		st := r.Stats()
		if ok {
			if !slices.Equal(got, want) || st.Errors != 0 {
				t.Fatalf("whole input: lines %q (errors %d), want %q", got, st.Errors, want)
			}
		} else if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) || st.Errors == 0 {
			t.Fatalf("corrupt input: lines %q (errors %d), want a prefix of %q and an error", got, st.Errors, want)
		}
		if st.Lines != uint64(len(got)) {
			t.Fatalf("Stats.Lines %d, %d lines sent", st.Lines, len(got))
		}
		if !r.Progress().Done {
			t.Fatal("replay not done after Stream returned")
		}
	})
}
