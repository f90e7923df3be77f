package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/store"
)

var testDefaults = importDefaults{duration: "4h", reason: "manual", typ: "ban"}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"list.json", "198.51.100.1\n", "json"},
		{"list.CSV", "198.51.100.1\n", "csv"},
		{"-", "  [\n{\"value\":\"198.51.100.1\"}]", "json"},
		{"-", "duration,scope,value\n24h,ip,1.2.3.4\n", "csv"},
		{"-", "\ufeffValue,Reason\n1.2.3.4,x\n", "csv"},
		{"list.txt", "198.51.100.1\n198.51.100.2 ; note, with a comma\n", "values"},
		{"-", "", "values"},
	} {
		if got := detectFormat(tc.name, []byte(tc.data)); got != tc.want {
			t.Errorf("detectFormat(%q, %q) = %s, want %s", tc.name, tc.data, got, tc.want)
		}
	}
}

// Each entry keeps the line it came from; bad entries are skipped with
// their line, the file's defaults fill what a line leaves out.
func TestParseImport(t *testing.T) {
	entry := func(line int, value, dur, reason, typ, scenario string) api.ImportEntry {
		return api.ImportEntry{Line: line, NewDecision: api.NewDecision{Value: value, Duration: dur, Reason: reason, Type: typ, Scenario: scenario}}
	}
	for _, tc := range []struct {
		name, format, data string
		entries            []api.ImportEntry
		skipped            []api.ImportSkip
	}{
		{
			name: "values", format: "values",
			data: "# a list\n198.51.100.1\n\n198.51.100.0/24 ; SBL1\n  2001:db8::1  \n198.51.100.1/32\n198.51.100.9/24\n",
			entries: []api.ImportEntry{
				entry(2, "198.51.100.1", "4h", "manual", "ban", ""),
				entry(4, "198.51.100.0/24", "4h", "manual", "ban", ""),
				entry(5, "2001:db8::1", "4h", "manual", "ban", ""),
			},
			skipped: []api.ImportSkip{
				{Line: 6, Value: "198.51.100.1/32", Reason: "duplicate of line 2"},
				{Line: 7, Value: "198.51.100.9/24", Reason: "duplicate of line 4"},
			},
		},
		{
			name: "cscli csv", format: "csv",
			data: "duration,scope,value,reason\n24h,ip,1.2.3.4,ssh\n,range,10.0.0.0/8,\n1h,username,bob,x\n1h,ip,10.1.0.0/16,x\n",
			entries: []api.ImportEntry{
				entry(2, "1.2.3.4", "24h", "ssh", "ban", ""),
				entry(3, "10.0.0.0/8", "4h", "manual", "ban", ""),
			},
			skipped: []api.ImportSkip{
				{Line: 4, Value: "bob", Reason: `scope "username": only ip and range can be banned`},
				{Line: 5, Value: "10.1.0.0/16", Reason: "scope ip: want an IP address"},
			},
		},
		{
			name: "csv with moat columns and a comment", format: "csv",
			data:    "value,type,scenario,origin\n# skipped\n1.2.3.4,captcha,feed-x,cscli\n,ban,y,z\n",
			entries: []api.ImportEntry{entry(3, "1.2.3.4", "4h", "manual", "captcha", "feed-x")},
			skipped: []api.ImportSkip{{Line: 4, Reason: "no value"}},
		},
		{
			name: "json", format: "json",
			data: "[\n  {\"value\": \"1.2.3.4\", \"duration\": \"1h\"},\n  {\"value\": 7},\n  {\"value\": \"10.0.0.0/24\", \"scope\": \"Range\",\n   \"reason\": \"r\"}\n]\n",
			entries: []api.ImportEntry{
				entry(2, "1.2.3.4", "1h", "manual", "ban", ""),
				entry(4, "10.0.0.0/24", "4h", "r", "ban", ""),
			},
			skipped: []api.ImportSkip{{Line: 3, Reason: "want an object of strings: json: cannot unmarshal number into Go struct field jsonEntry.value of type string"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := parseImport("f", []byte(tc.data), tc.format, testDefaults)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.entries, in.entries); d != "" {
				t.Errorf("entries (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.skipped, in.skipped); d != "" {
				t.Errorf("skipped (-want +got):\n%s", d)
			}
		})
	}
}

// A malformed file is refused whole, naming the line.
func TestParseImportMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, format, data, want string
	}{
		{"unknown column", "csv", "value,colour\n1.2.3.4,blue\n", `f:1: CSV column "colour"`},
		{"no value column", "csv", "duration,reason\n1h,x\n", "f:1: CSV header has no value column"},
		{"bad quote", "csv", "value,reason\n1.2.3.4,ok\n1.2.3.5,\"open\n", "f:3:"},
		{"not an array", "json", "{\"value\": \"1.2.3.4\"}", "f:1: want a JSON array"},
		{"broken object", "json", "[\n{\"value\": \"1.2.3.4\"},\n{\"value\" \"x\"}\n]", "f:3:"},
		{"unknown format", "yaml", "1.2.3.4", `--format "yaml"`},
		{"a line over 1 MiB", "values", "1.2.3.4\n" + strings.Repeat("x", 1<<20+1), "f:2: bufio.Scanner: token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseImport("f", []byte(tc.data), tc.format, testDefaults)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err %v is not a usage error", err)
			}
		})
	}
}

func TestDecisionsImport(t *testing.T) {
	cfg, svc := adminDaemon(t)
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "list.csv")
	// 198.18.250.0/24 is allowlisted by adminDaemon.
	must(t, os.WriteFile(csvFile, []byte("value,duration,reason\n198.18.1.1,2h,partner\n198.18.250.7,,\nnot-an-ip,,\n198.18.2.0/24,,\n198.18.1.2,-1h,\n"), 0o644))
	code, out, errOut := runMoat(t, "", "decisions", "import", csvFile, "-c", cfg, "-o", "json", "--batch", "2")
	if code != exitOK {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	var res api.ImportResponse
	must(t, json.Unmarshal([]byte(out), &res))
	if res.Imported != 2 {
		t.Errorf("imported %d, want 2: %s", res.Imported, out)
	}
	reasons := map[int]string{}
	for _, s := range res.Skipped {
		reasons[s.Line] = s.Reason
	}
	for line, want := range map[int]string{3: "allowlisted", 4: "want an IP address or CIDR range", 6: "duration"} {
		if !strings.Contains(reasons[line], want) {
			t.Errorf("line %d skipped for %q, want %q", line, reasons[line], want)
		}
	}
	if len(res.Skipped) != 3 {
		t.Errorf("skipped %v, want lines 3, 4 and 6", res.Skipped)
	}
	recs, err := svc.List(context.Background(), store.Filter{Origin: "cli"})
	must(t, err)
	got := map[string]store.Record{}
	for _, r := range recs {
		got[r.Value.String()] = r
	}
	if r, ok := got["198.18.1.1/32"]; !ok || r.Reason != "partner" || time.Until(r.Until) > 2*time.Hour || time.Until(r.Until) < time.Hour {
		t.Errorf("198.18.1.1: %+v, want a 2h decision for partner", r)
	}
	if r, ok := got["198.18.2.0/24"]; !ok || r.Reason != "manual" || time.Until(r.Until) < 3*time.Hour {
		t.Errorf("198.18.2.0/24: %+v, want a 4h decision for manual", r)
	}
	if len(got) != 2 {
		t.Errorf("stored %v, want two decisions", got)
	}

	// Stdin, one value a line, the summary as text.
	code, out, errOut = runMoat(t, "198.18.3.1\n198.18.250.1\n", "decisions", "import", "-", "-c", cfg, "-o", "human", "--reason", "stdin")
	if code != exitOK || !strings.HasPrefix(out, "1 decision(s) imported, 1 skipped.\n") || !strings.Contains(out, "line 2: 198.18.250.1: ") {
		t.Fatalf("import from stdin: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = runMoat(t, "198.18.3.2\n198.18.250.2\n", "decisions", "import", "-c", cfg, "-o", "raw")
	if code != exitOK || out != "198.18.250.2\n" {
		t.Fatalf("import -o raw = %d %q, want the skipped value alone", code, out)
	}
}

func TestDecisionsImportUsage(t *testing.T) {
	cfg, _ := adminDaemon(t)
	for _, args := range [][]string{
		{"decisions", "import", "-c", cfg, "--batch", "0"},
		{"decisions", "import", "a", "b", "-c", cfg},
		{"decisions", "import", "/nonexistent/list.txt", "-c", cfg},
		{"decisions", "import", "-", "-c", cfg},
	} {
		code, _, errOut := runMoat(t, "# nothing\n", args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
}
