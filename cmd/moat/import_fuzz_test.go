package main

import (
	"bytes"
	"errors"
	"testing"
)

// An import file comes from anywhere. Whatever it holds, parseImport
// either refuses it as a usage error or returns entries and skips whose
// lines are lines of the input, each entry with a value and a duration.
func FuzzParseImport(f *testing.F) {
	for _, s := range []string{
		"198.51.100.1\n198.51.100.0/24 ; x\n",
		"duration,scope,value\n24h,ip,1.2.3.4\n,range,10.0.0.0/8\n",
		"[{\"value\": \"1.2.3.4\", \"duration\": \"1h\"}, {\"value\": 7}]",
		"value,reason\n\"a\nb\",x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		data := []byte(in)
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, format := range []string{"values", "csv", "json"} {
			got, err := parseImport("f", data, format, testDefaults)
			if err != nil {
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("%s: %v is not a usage error", format, err)
				}
				continue
			}
			for _, e := range got.entries {
				if e.Line < 1 || e.Line > lines || e.Value == "" || e.Duration == "" {
					t.Fatalf("%s: entry %+v of a %d-line input", format, e, lines)
				}
			}
			for _, s := range got.skipped {
				if s.Line < 1 || s.Line > lines || s.Reason == "" {
					t.Fatalf("%s: skip %+v of a %d-line input", format, s, lines)
				}
			}
		}
	})
}
