package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce/store"
)

func postImport(t *testing.T, f *fixture, req ImportRequest) (int, ImportResponse) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(f.admin.URL+"/v1/admin/decisions/import?origin=cli", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out ImportResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, out
}

// One bad, allowlisted or protected entry is skipped with its line; the
// others are imported, stored and enforced.
func TestImport(t *testing.T) {
	f := newFixture(t)
	f.svc.Protect = func(p netip.Prefix) error {
		if p.Contains(netip.MustParseAddr("198.18.9.9")) {
			return fmt.Errorf("this host's address")
		}
		return nil
	}
	entry := func(line int, value, dur string) ImportEntry {
		return ImportEntry{Line: line, NewDecision: NewDecision{Value: value, Duration: dur, Reason: "list"}}
	}
	code, res := postImport(t, f, ImportRequest{Decisions: []ImportEntry{
		entry(1, "198.18.1.1", "1h"),
		entry(2, "198.18.200.5", "1h"), // allowlisted in newFixture
		entry(3, "nonsense", "1h"),
		entry(4, "198.18.2.0/24", "1h"),
		entry(5, "198.18.9.9", "1h"), // protected: found when the batch is refused
		entry(6, "198.18.1.2", "soon"),
	}})
	if code != http.StatusOK {
		t.Fatalf("import answered %d", code)
	}
	if res.Imported != 2 {
		t.Errorf("imported %d, want 2", res.Imported)
	}
	want := map[int]string{2: "allowlisted", 3: "want an IP address or CIDR range", 5: "protected", 6: "duration"}
	if len(res.Skipped) != len(want) {
		t.Errorf("skipped %+v, want lines 2, 3, 5, 6", res.Skipped)
	}
	for _, s := range res.Skipped {
		if !strings.Contains(s.Reason, want[s.Line]) || want[s.Line] == "" {
			t.Errorf("line %d (%s) skipped for %q, want %q", s.Line, s.Value, s.Reason, want[s.Line])
		}
	}
	recs, err := f.svc.List(context.Background(), store.Filter{Origin: "cli"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("stored %v, %v; want the two good entries", recs, err)
	}
	f.enf.mu.Lock()
	held := len(f.enf.held)
	f.enf.mu.Unlock()
	if held != 2 {
		t.Errorf("kernel holds %d, want 2", held)
	}
}

// A request over the cap is refused whole, before anything is stored.
func TestImportCap(t *testing.T) {
	f := newFixture(t)
	es := make([]ImportEntry, MaxImportPerRequest+1)
	for i := range es {
		es[i] = ImportEntry{Line: i + 1, NewDecision: NewDecision{Value: "198.18.1.1", Duration: "1h"}}
	}
	if code, _ := postImport(t, f, ImportRequest{Decisions: es}); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("import of %d answered %d, want 413", len(es), code)
	}
	n, err := f.st.CountMatching(context.Background(), store.Filter{})
	if err != nil || n != 0 {
		t.Fatalf("%d decisions stored (%v), want none", n, err)
	}
	if code, _ := postImport(t, f, ImportRequest{Decisions: es[:MaxImportPerRequest]}); code != http.StatusOK {
		t.Fatalf("import of exactly the cap answered %d", code)
	}
}
