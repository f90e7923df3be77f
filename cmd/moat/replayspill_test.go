package main

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// TestAlertSpillOrder: alerts spilled in several runs print as a stable
// sort of them all in memory would, in every format, with many ties on
// the first event, and bytes that are not UTF-8 kept for the table to
// escape.
func TestAlertSpillOrder(t *testing.T) {
	for _, n := range []int{0, 5, spillChunk, 3*spillChunk + 17} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 9))
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			var all []model.Alert
			for i := range n {
				all = append(all, model.Alert{
					Scenario:    []string{"moat/ssh-bf", "moat/ssh-slow-bf", "x\xff"}[rng.IntN(3)],
					Scope:       "Ip",
					Value:       "198.18.0." + strconv.Itoa(rng.IntN(4)),
					Message:     "alert " + strconv.Itoa(i), // tells ties apart
					Start:       t0.Add(time.Duration(rng.IntN(50)) * time.Second),
					Stop:        t0.Add(time.Hour),
					EventsCount: i,
					Remediation: i%2 == 0,
				})
			}
			want := make([]api.Alert, len(all))
			for i, a := range all {
				want[i] = api.AlertOf(a)
			}
			slices.SortStableFunc(want, replayOrder)
			for _, format := range []string{"json", "table", "raw"} {
				s, err := newAlertSpill()
				if err != nil {
					t.Fatal(err)
				}
				for rest := all; len(rest) > 0; {
					k := min(len(rest), 1+rng.IntN(100))
					s.add(rest[:k])
					rest = rest[k:]
				}
				var got, exp bytes.Buffer
				if err := s.write(&got, format); err != nil {
					t.Fatal(err)
				}
				s.Close()
				if n > spillChunk && len(s.runs) < 2 {
					t.Errorf("%d alerts in %d runs", n, len(s.runs))
				}
				lw := replayListing.writer(&exp, format, maxTableSample)
				for _, al := range want {
					if err := lw.write(al); err != nil {
						t.Fatal(err)
					}
				}
				if err := lw.close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), exp.Bytes()) {
					t.Errorf("%d alerts -o %s: spilled output differs from a sort in memory", n, format)
				}
			}
		})
	}
}
