package acquire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type splitOut struct {
	Line string
	Cut  bool
}

// splitChunks feeds data in chunks of size n and returns the lines, the
// resumable position and skip state after each, and what flush returns.
func splitChunks(data []byte, max, n int) (out []splitOut, ends []int, skips []bool, rest []byte) {
	sp := splitter{max: max}
	for base := 0; base < len(data); base += n {
		chunk := data[base:min(base+n, len(data))]
		sp.feed(chunk, func(line []byte, cut bool, end int) bool {
			out = append(out, splitOut{string(line), cut})
			ends = append(ends, base+end)
			skips = append(skips, sp.skip)
			return true
		})
	}
	return out, ends, skips, sp.flush()
}

// refSplit is the obvious line splitter the streaming one must agree with.
func refSplit(data []byte, max int) (out []splitOut, rest []byte) {
	segs := bytes.Split(data, []byte("\n"))
	last := segs[len(segs)-1]
	for _, s := range segs[:len(segs)-1] {
		out = append(out, refLine(s, max))
	}
	if len(last) > max {
		out = append(out, refLine(last, max))
		return out, nil
	}
	if len(last) == 0 {
		return out, nil
	}
	return out, trimCR(last)
}

func refLine(s []byte, max int) splitOut {
	if len(s) > max {
		return splitOut{string(trimCR(cutRune(s[:max]))), true}
	}
	return splitOut{string(trimCR(s)), false}
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want []splitOut
		rest string
	}{
		{"plain", "a\nbb\n", 8, []splitOut{{"a", false}, {"bb", false}}, ""},
		{"partial held", "a\nbb", 8, []splitOut{{"a", false}}, "bb"},
		{"crlf", "a\r\nb\r\n", 8, []splitOut{{"a", false}, {"b", false}}, ""},
		{"empty lines", "\n\n", 8, []splitOut{{"", false}, {"", false}}, ""},
		{"cut", "0123456789\nx\n", 4, []splitOut{{"0123", true}, {"x", false}}, ""},
		{"cut without newline yet", "0123456789", 4, []splitOut{{"0123", true}}, ""},
		{"exactly max", "0123\n", 4, []splitOut{{"0123", false}}, ""},
		{"cut keeps whole runes", "aé€x\n", 4, []splitOut{{"aé", true}}, ""},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 2, 3, len(tt.in)} {
			out, _, _, rest := splitChunks([]byte(tt.in), tt.max, n)
			if d := cmp.Diff(tt.want, out); d != "" {
				t.Errorf("%s, chunks of %d: lines differ (-want +got):\n%s", tt.name, n, d)
			}
			if string(rest) != tt.rest {
				t.Errorf("%s, chunks of %d: rest %q, want %q", tt.name, n, rest, tt.rest)
			}
		}
	}
}

func TestSplitterStops(t *testing.T) {
	sp := splitter{max: 16}
	var got []string
	ok := sp.feed([]byte("a\nb\nc\n"), func(line []byte, _ bool, end int) bool {
		if string(line) == "b" {
			return false
		}
		got = append(got, string(line))
		return true
	})
	if ok || !cmp.Equal(got, []string{"a"}) {
		t.Fatalf("feed after refusal: ok=%v lines=%q", ok, got)
	}
}

// FuzzSplitter checks the streaming splitter against refSplit for any input,
// chunking and maximum, and that resuming a fresh splitter at any reported
// position (a restart) yields exactly the lines that followed it.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("Nov 25 06:31:17 web1 sshd[2311]: Invalid user admin\n"), uint8(7), uint8(20))
	f.Add([]byte("a\r\nbb\n\nccc"), uint8(1), uint8(0))
	f.Add([]byte(strings.Repeat("x", 300)+"\nshort\n"), uint8(64), uint8(60))
	f.Add([]byte("aé€\xf0\x9f\x98\x80\n\xff\xfe\n"), uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk, max uint8) {
		m := int(max)%64 + 4
		n := int(chunk)%17 + 1
		want, wantRest := refSplit(data, m)
		got, ends, skips, rest := splitChunks(data, m, n)
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("max %d chunk %d: lines differ (-ref +got):\n%s", m, n, d)
		}
		if !bytes.Equal(rest, wantRest) {
			t.Fatalf("rest %q, want %q", rest, wantRest)
		}
		for k := range got {
			if k%7 != 0 && k != len(got)-1 {
				continue // a sample of restart points keeps this linear
			}
			sp := splitter{max: m, skip: skips[k]}
			var again []splitOut
			sp.feed(data[ends[k]:], func(line []byte, cut bool, _ int) bool {
				again = append(again, splitOut{string(line), cut})
				return true
			})
			if d := cmp.Diff(got[k+1:], again, cmpEmpty); d != "" {
				t.Fatalf("restart after line %d (offset %d): (-want +got):\n%s", k, ends[k], d)
			}
		}
	})
}

var cmpEmpty = cmp.Transformer("nilToEmpty", func(s []splitOut) []splitOut {
	if s == nil {
		return []splitOut{}
	}
	return s
})

// FuzzLoadConfig: an error means no configs and an ErrConfig naming the
// file; success means every document validates and builds a source.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"source: file\nfilenames: [/var/log/auth.log]\nlabels: {type: syslog}\n",
		"source: journalctl\njournalctl_filter: [\"_SYSTEMD_UNIT=ssh.service\", \"+\", \"SYSLOG_IDENTIFIER=sshd\"]\nlabels: {type: syslog}\n---\n",
		"source: file\nfilename: /x/*.log\nlabels: {type: nginx}\npoll_interval: 1s\nmax_line_length: 100\n",
		"source: file\n\tbad",
		"---\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/etc/moat/acquis.d/fuzz.yaml"
		cs, err := LoadConfig(path, data)
		if err != nil {
			if cs != nil || !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), path+":") {
				t.Fatalf("error %v with configs %v", err, cs)
			}
			return
		}
		for _, c := range cs {
			if c.File != path || c.Line < 1 || c.Name == "" {
				t.Fatalf("origin: %+v", c)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("loaded config fails Validate: %v", err)
			}
			if _, err := New(c, ""); err != nil {
				t.Fatalf("New: %v", err)
			}
		}
	})
}
