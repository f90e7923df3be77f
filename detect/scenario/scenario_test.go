package scenario

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*/expected.json")

// inputEvent is one line of a case's events.jsonl.
type inputEvent struct {
	Time          time.Time
	MarshaledTime string
	Meta          map[string]string
	Parsed        map[string]string
	// Overflow makes the event an overflow poured again (reprocess).
	Overflow detect.Overflow
}

// result is what a case produces: the overflows after each event (After
// is the 0-based event index, -1 for Flush) and the counters at the end.
type result struct {
	Overflows []resultOverflow
	Stats     Stats
}

type resultOverflow struct {
	After   int
	Sources []string
	Alerts  []model.Alert
}

func readEvents(t *testing.T, path string) []*detect.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*detect.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var in inputEvent
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		e := detect.NewEvent(detect.Line{Raw: "test", Module: "test", ReadAt: in.Time, Process: true})
		e.Time = in.Time
		e.MarshaledTime = in.MarshaledTime
		maps.Copy(e.Meta, in.Meta)
		maps.Copy(e.Parsed, in.Parsed)
		e.Overflow = in.Overflow
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func record(after int, ovs []Overflow) []resultOverflow {
	var out []resultOverflow
	for _, o := range ovs {
		out = append(out, resultOverflow{After: after, Sources: slices.Sorted(maps.Keys(o.Sources)), Alerts: o.Alerts()})
	}
	return out
}

// TestCases runs every testdata/<case>: scenario.yaml, events.jsonl and the
// optional options.json against expected.json.
func TestCases(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/scenario.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no test cases")
	}
	for _, p := range dirs {
		dir := filepath.Dir(p)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var opts Options
			if raw, err := os.ReadFile(filepath.Join(dir, "options.json")); err == nil {
				if err := json.Unmarshal(raw, &opts); err != nil {
					t.Fatal(err)
				}
			}
			set, err := Load([]string{p}, opts)
			if err != nil {
				t.Fatal(err)
			}
			var res result
			for i, e := range readEvents(t, filepath.Join(dir, "events.jsonl")) {
				res.Overflows = append(res.Overflows, record(i, set.PourOverflows(e))...)
			}
			res.Overflows = append(res.Overflows, record(-1, set.FlushOverflows())...)
			res.Stats = set.Stats()
			got, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(dir, "expected.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}
