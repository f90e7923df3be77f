package grok

import (
	"maps"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestGrok(t *testing.T) {
	g := New(Options{})
	g.Add("MYPROG", `%{WORD:prog}(?:\[%{POSINT:pid}\])?`)
	tests := []struct {
		pattern, in string
		want        map[string]string // nil: no match
	}{
		{`from %{IP:ip} port`, "Invalid user x from 2001:db8::1 port 22", map[string]string{"ip": "2001:db8::1"}},
		{`from %{IP:ip} port`, "from ::1 port 22", map[string]string{"ip": "::1"}},
		{`from %{IP:ip} port`, "from 198.18.0.255 port 22", map[string]string{"ip": "198.18.0.255"}},
		{`from %{IP:ip}$`, "from 2001:db8:0:0:0:0:0:7", map[string]string{"ip": "2001:db8:0:0:0:0:0:7"}},
		{`from %{IP:ip}$`, "from 999.1.1.1", nil},
		{`^%{MYPROG}: %{GREEDYDATA:msg}`, "sshd[42]: hello", map[string]string{"prog": "sshd", "pid": "42", "msg": "hello"}},
		{`^%{MYPROG}: %{GREEDYDATA:msg}`, "cron: hi", map[string]string{"prog": "cron", "pid": "", "msg": "hi"}},
		{`%{HTTPDATE:t}`, "[01/Mar/2026:00:00:00 +0000]", map[string]string{"t": "01/Mar/2026:00:00:00 +0000"}},
		{`%{NUMBER:n:int} %{WORD:w}`, "x 3.5 y", map[string]string{"n": "3.5", "w": "y"}},
		{`(?<raw>ab+)c`, "xabbc", map[string]string{"raw": "abb"}},
	}
	for _, tt := range tests {
		c, err := g.Compile(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		got := map[string]string{}
		ok := c.Match(tt.in, got)
		if ok != (tt.want != nil) || (ok && !maps.Equal(got, tt.want)) {
			t.Errorf("%s on %q = %v %v, want %v", tt.pattern, tt.in, ok, got, tt.want)
		}
	}
	if _, err := g.Compile(`%{NOPE}`); err == nil {
		t.Error("unknown pattern compiled")
	}
}

// A pattern dir that repeats or respells base patterns keeps the syslog and
// IPv4 fast paths; one that changes what they match disables them.
func TestFastPathsSurviveRedefinitions(t *testing.T) {
	syslog := func(g *Library) {
		for _, k := range []string{"SYSLOGLINE", "SYSLOGBASE2"} {
			g.defs[k] = syslogDefs[k]
		}
	}
	tests := []struct {
		name   string
		redef  map[string]string
		fast   bool
		v4fast bool
	}{
		{"none", nil, true, true},
		{"same text", map[string]string{"IPORHOST": basePatterns["IPORHOST"], "IPV6": basePatterns["IPV6"], "HOSTNAME": basePatterns["HOSTNAME"], "POSINT": basePatterns["POSINT"]}, true, true},
		{"same regexp spelt differently", map[string]string{"POSINT": `\b[1-9][0-9]*\b`, "MONTHDAY": `(?:0[1-9]|[12][0-9]|3[01]|[1-9])`, "GREEDYDATA": `(?:.*)`}, true, true},
		{"different PROG", map[string]string{"PROG": `[a-z]+`}, false, true},
		{"different HOSTNAME", map[string]string{"HOSTNAME": `[a-z.]+`}, false, false},
		{"different IPV6", map[string]string{"IPV6": `[0-9a-f:]+`}, false, false},
	}
	for _, tt := range tests {
		g := New(Options{})
		syslog(g)
		for k, v := range tt.redef {
			g.Add(k, v)
		}
		c, err := g.Compile("^%{SYSLOGLINE}")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (c.fast != nil) != tt.fast {
			t.Errorf("%s: syslog fast path installed = %v, want %v", tt.name, c.fast != nil, tt.fast)
		}
		if (c.v4 != nil) != tt.v4fast {
			t.Errorf("%s: IPv4 variant installed = %v, want %v", tt.name, c.v4 != nil, tt.v4fast)
		}
	}
}

// shapeOf agrees with the plain definitions of what it looks for.
func FuzzShapeOf(f *testing.F) {
	for _, s := range []string{
		"", "from 198.18.0.1 port 22", "from 2001:db8::1 port 22", "a:b:c:d:e:f:0", "a:b:c:d:e:f",
		"1:2:3 x 4:5:6:7", "fe80::1%eth0", strings.Repeat("a", 63) + ".b", strings.Repeat("a-1", 22), "::", ":x:",
		strings.Repeat("a", 64), "x " + strings.Repeat("b", 63) + " " + strings.Repeat("c", 64), strings.Repeat("d", 63) + " " + strings.Repeat("e", 63),
		// Six colons in all, but not in one run; and five in one.
		"a:b:c x d:e:f", "pam_unix(sshd:session): session opened for 1:2:3:4:5:6",
	} {
		f.Add(s)
	}
	label := regexp.MustCompile(`[0-9A-Za-z-]{64}`)
	run := regexp.MustCompile(`[0-9A-Fa-f:.]+`)
	f.Fuzz(func(t *testing.T, s string) {
		wantV6 := false
		for _, r := range run.FindAllString(s, -1) {
			if strings.Contains(r, "::") || strings.Count(r, ":") >= 6 {
				wantV6 = true
			}
		}
		wantLong := label.MatchString(s)
		long, v6 := shapeOf(s)
		if long != wantLong || !long && v6 != wantV6 {
			t.Fatalf("%q: shapeOf %v %v, want %v %v", s, long, v6, wantLong, wantV6)
		}
	})
}

// Patterns are shared between goroutines: the first lines to need the
// Regexp tier build its programs once, and all get its answer.
func TestLazyRegexpConcurrent(t *testing.T) {
	g := New(Options{})
	c, err := g.Compile(`%{WORD:user} from %{IP:ip}`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			<-start
			got := map[string]string{}
			// Non-ASCII: past the backtracker, to Go's regexp.
			if !c.Match("é bob from 2001:db8::1", got) || got["user"] != "bob" || got["ip"] != "2001:db8::1" {
				t.Errorf("got %v", got)
			}
		})
	}
	close(start)
	wg.Wait()
}

// asciiLine agrees with a byte loop wherever the newline or the high
// byte sits in the words it reads.
func TestASCIILine(t *testing.T) {
	naive := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] == '\n' || s[i] >= 0x80 {
				return false
			}
		}
		return true
	}
	base := []byte("Failed password for root from 198.18.0.1 port 22")
	for _, bad := range []byte{'\n', 0x80, 0xff, '\t', 0x0b, 0x09, 0x7f, 0x01} {
		for n := range len(base) + 1 {
			for at := range n {
				b := append([]byte(nil), base[:n]...)
				b[at] = bad
				if s := string(b); asciiLine(s) != naive(s) {
					t.Fatalf("%q: asciiLine %v, byte loop %v", s, asciiLine(s), naive(s))
				}
			}
			if s := string(base[:n]); !asciiLine(s) {
				t.Fatalf("%q: asciiLine rejects a plain line", s)
			}
		}
	}
}
