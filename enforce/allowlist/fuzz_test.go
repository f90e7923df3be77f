package allowlist

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParseFile: every entry read is a value the manager can use, on the
// line it came from, and no line yields both an entry and an error.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte("198.18.0.1 # office\n2001:db8::/48\nhome.example.org#x\n300.1.2.3\n"))
	f.Add([]byte("\x00\n#\n \t\n0.0.0.0/0\n"))
	f.Add([]byte("country:FR # office\nas:AS64500\ncountry:FRA\nas:0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, errs := ParseFile("f", data, false)
		lines := bytes.Count(data, []byte("\n")) + 1
		if len(es)+len(errs) > lines {
			t.Fatalf("%d entries and %d errors from %d lines", len(es), len(errs), lines)
		}
		seen := map[int]bool{}
		for _, e := range es {
			if _, _, _, err := parseValue(e.Value, false); err != nil {
				t.Fatalf("entry %q does not parse: %v", e.Value, err)
			}
			if e.Line < 1 || e.Line > lines || seen[e.Line] {
				t.Fatalf("entry %q on line %d", e.Value, e.Line)
			}
			seen[e.Line] = true
		}
	})
}

// FuzzParseUTMP: a session has an address that can be protected, and no
// more sessions come out than whole records went in.
func FuzzParseUTMP(f *testing.F) {
	rec := utmpRecord{typ: userProcess, line: "pts/0", user: "alice", addr: netip.MustParseAddr("198.18.4.4")}.bytes()
	f.Add(rec)
	f.Add(append(rec, rec[:100]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		ss := ParseUTMP(data)
		if len(ss) > len(data)/utmpSize {
			t.Fatalf("%d sessions from %d bytes", len(ss), len(data))
		}
		for _, s := range ss {
			if !s.Addr.IsValid() || s.Addr.IsUnspecified() || s.Addr.Zone() != "" {
				t.Fatalf("session %+v has no usable address", s)
			}
		}
	})
}
