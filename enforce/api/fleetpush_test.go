package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

func TestPushChains(t *testing.T) {
	alert := func(v string, carried ...string) pushed {
		p := pushed{alert: model.Alert{Value: v}}
		for _, c := range carried {
			p.decisions = append(p.decisions, model.Decision{Value: netip.MustParsePrefix(c)})
		}
		return p
	}
	for _, tc := range []struct {
		name string
		in   []pushed
		want [][]int
	}{
		{"distinct values", []pushed{alert("192.0.2.1"), alert("192.0.2.2"), alert("192.0.2.3")}, [][]int{{0}, {1}, {2}}},
		{"a value twice stays in order", []pushed{alert("192.0.2.1"), alert("192.0.2.2"), alert("192.0.2.1")}, [][]int{{0, 2}, {1}}},
		{"a carried decision's value chains", []pushed{alert("192.0.2.1", "192.0.2.9/32"), alert("192.0.2.9")}, [][]int{{0, 1}}},
		{"joining two chains: one chain", []pushed{alert("192.0.2.1"), alert("192.0.2.2"), alert("192.0.2.1", "192.0.2.2/32"), alert("192.0.2.3")}, [][]int{{0, 1, 2, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pushChains(tc.in); !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("chains %v, want %v", got, tc.want)
			}
		})
	}
}

// A push's alerts are decided concurrently, yet a push answers their IDs
// in its order and an address pushed twice in one push is banned once,
// the second alert seeing the first one's ban.
func TestPushConcurrentKeepsOrder(t *testing.T) {
	m := newMachineFixture(t)
	tok := m.login(t, "agent-1")
	one := strings.TrimSuffix(strings.TrimPrefix(sshAlert, "["), "]")
	var parts, want []string
	for i := range 40 {
		ip := fmt.Sprintf("192.0.2.%d", 100+i%10)
		parts = append(parts, strings.ReplaceAll(one, "192.0.2.10", ip))
		want = append(want, ip)
	}
	code, body := m.call(t, "POST", "/v1/alerts", tok, "["+strings.Join(parts, ",")+"]")
	var ids []string
	if code != 201 || json.Unmarshal(body, &ids) != nil || len(ids) != len(want) {
		t.Fatalf("push: %d %s", code, body)
	}
	ctx := context.Background()
	for i, id := range ids {
		var n int64
		fmt.Sscan(id, &n)
		a, err := m.st.GetAlert(ctx, n)
		if err != nil || a.Alert.Value != want[i] {
			t.Fatalf("ID %d of the answer (%s): alert %+v, %v; want one on %s", i, id, a, err, want[i])
		}
	}
	recs, err := m.st.ListDecisions(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range recs {
		per[model.ValueString(r.Value)]++
	}
	if len(recs) != 10 || len(per) != 10 {
		t.Errorf("%d decisions on %d addresses, want one on each of 10: %v", len(recs), len(per), per)
	}
}

// Writes faster than the wake period may wait for the end of the period
// to wake the streams, yet the generation counts each write at once, no
// write goes without a wake after it, and the wake's generation covers
// every write before it.
func TestChangesCoalesce(t *testing.T) {
	c := NewChanges()
	ch, gen := c.wait()
	c.Notify() // after a quiet spell: at once
	select {
	case <-ch:
	default:
		t.Fatal("the first write did not wake the streams at once")
	}
	ch, g1 := c.wait()
	if g1 != gen+1 || c.current() != g1 {
		t.Fatalf("generation %d (now %d) after one write from %d", g1, c.current(), gen)
	}
	for range 100 {
		c.Notify()
	}
	if g := c.current(); g != g1+100 {
		t.Errorf("generation %d after 100 more writes from %d", g, g1)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the burst never woke the streams")
	}
	if _, g := c.wait(); g != g1+100 {
		t.Errorf("the burst's wake at generation %d, want %d", g, g1+100)
	}
}

// The period between wakes grows with the streams open, within bounds.
func TestWakeEvery(t *testing.T) {
	for _, c := range []struct {
		streams int64
		want    time.Duration
	}{{0, fleetWakeEvery}, {1, fleetWakeEvery}, {500, 50 * time.Millisecond}, {1000, fleetWakeMax}, {100000, fleetWakeMax}} {
		if got := wakeEvery(c.streams); got != c.want {
			t.Errorf("%d streams: every %v, want %v", c.streams, got, c.want)
		}
	}
}
