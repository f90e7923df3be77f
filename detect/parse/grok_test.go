package parse

import (
	"maps"
	"testing"
)

func TestGrok(t *testing.T) {
	g := newGrokLib()
	g.add("MYPROG", `%{WORD:prog}(?:\[%{POSINT:pid}\])?`)
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
		c, err := g.compile(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		got := map[string]string{}
		ok := c.match(tt.in, func(k, v string) { got[k] = v })
		if ok != (tt.want != nil) || (ok && !maps.Equal(got, tt.want)) {
			t.Errorf("%s on %q = %v %v, want %v", tt.pattern, tt.in, ok, got, tt.want)
		}
	}
	if _, err := g.compile(`%{NOPE}`); err == nil {
		t.Error("unknown pattern compiled")
	}
}
