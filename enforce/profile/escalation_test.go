package profile

import (
	"context"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestEscalationApply(t *testing.T) {
	e := &Escalation{Factor: 2, Max: 7 * day, Jitter: 0.1}
	for _, tc := range []struct {
		name    string
		earlier int
		u       float64
		want    time.Duration
	}{
		{name: "first ban, no jitter", earlier: 0, u: 0.5, want: 4 * time.Hour},
		{name: "second ban doubles", earlier: 1, u: 0.5, want: 8 * time.Hour},
		{name: "fifth ban", earlier: 4, u: 0.5, want: 64 * time.Hour},
		{name: "capped", earlier: 6, u: 0.5, want: 7 * day},
		{name: "far past the cap, no overflow", earlier: 500, u: 0.5, want: 7 * day},
		{name: "jitter low end", earlier: 0, u: 0, want: 4 * time.Hour * 9 / 10},
		{name: "jitter high end", earlier: 1, u: 1, want: 8 * time.Hour * 11 / 10},
		{name: "jitter never passes the cap", earlier: 9, u: 0.999999, want: 7 * day},
		{name: "jitter below the cap", earlier: 9, u: 0, want: 7 * day * 9 / 10},
	} {
		got := e.Apply(4*time.Hour, tc.earlier, tc.u)
		if diff := got - tc.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	// No max: bounded by MaxDuration.
	if got := (&Escalation{Factor: 10}).Apply(time.Hour, 100, 0.5); got != MaxDuration {
		t.Errorf("uncapped: got %s, want %s", got, MaxDuration)
	}
}

// banAt returns a history with the given bans of value, ago before now.
func banAt(now time.Time, value string, ago ...time.Duration) *history {
	h := &history{taken: map[string][]time.Time{}}
	for _, a := range ago {
		h.taken[value] = append(h.taken[value], now.Add(-a))
	}
	return h
}

func TestEscalationInProfile(t *testing.T) {
	src := `name: esc
filters: ["true"]
decisions: [{type: ban, duration: 4h}]
duration_escalation: {factor: 2, max: 7d, jitter: 10%, decay_after: 30d}
`
	set, err := Parse("esc.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const ip = "198.18.0.9"
	for _, tc := range []struct {
		name     string
		ago      []time.Duration
		min, max time.Duration
	}{
		{name: "first offence", min: 4 * time.Hour * 9 / 10, max: 4 * time.Hour * 11 / 10},
		{name: "one earlier ban", ago: []time.Duration{time.Hour}, min: 8 * time.Hour * 9 / 10, max: 8 * time.Hour * 11 / 10},
		{name: "three earlier bans", ago: []time.Duration{time.Hour, 2 * day, 20 * day}, min: 32 * time.Hour * 9 / 10, max: 32 * time.Hour * 11 / 10},
		{name: "bans older than decay_after do not count", ago: []time.Duration{31 * day, 40 * day, 60 * day}, min: 4 * time.Hour * 9 / 10, max: 4 * time.Hour * 11 / 10},
		{name: "cap", ago: make([]time.Duration, 12), min: 7 * day * 9 / 10, max: 7 * day},
	} {
		// Real randomness, many draws: every one inside the bounds, and
		// not all the same (the jitter spreads them).
		seen := map[time.Duration]bool{}
		for range 200 {
			out, err := set.Decide(context.Background(), ipAlert(ip), banAt(now, ip, tc.ago...), now)
			if err != nil || len(out.Decisions) != 1 {
				t.Fatalf("%s: %+v, %v", tc.name, out, err)
			}
			d := out.Decisions[0].Until.Sub(now)
			if d < tc.min || d > tc.max {
				t.Fatalf("%s: %s outside [%s, %s]", tc.name, d, tc.min, tc.max)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("%s: only %d distinct durations in 200 bans: no jitter", tc.name, len(seen))
		}
	}
}

func TestRecidive(t *testing.T) {
	src := `name: recidive
filters: ["true"]
decisions: [{type: ban, duration: 1h}]
duration_escalation: {factor: 2, max: 12h}
recidive: {bans: 4, within: 24h, duration: 7d}
`
	set, err := Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	set.Rand = func() float64 { return 0.5 }
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const ip = "198.18.1.1"
	h := &history{taken: map[string][]time.Time{}}
	// Alerts of different scenarios, an hour apart: the 4th ban within
	// 24h is the recidive one, whatever raised the earlier three.
	scenarios := []string{"crowdsecurity/ssh-bf", "crowdsecurity/http-probing", "crowdsecurity/ssh-slow-bf", "crowdsecurity/http-crawl"}
	want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 7 * day}
	for i, sc := range scenarios {
		at := now.Add(time.Duration(i) * time.Hour)
		a := ipAlert(ip)
		a.Scenario = sc
		out, err := set.Decide(context.Background(), a, h, at)
		if err != nil || len(out.Decisions) != 1 {
			t.Fatalf("ban %d: %+v, %v", i+1, out, err)
		}
		d := out.Decisions[0]
		if got := d.Until.Sub(at); got != want[i] {
			t.Errorf("ban %d (%s): %s, want %s", i+1, sc, got, want[i])
		}
		if isRecidive := strings.HasPrefix(d.Reason, "recidive: ban 4 within 1d"); isRecidive != (i == 3) {
			t.Errorf("ban %d: reason %q", i+1, d.Reason)
		}
		h.taken[ip] = append(h.taken[ip], at)
	}
	// The same count spread over more than the window is no recidive.
	spread := banAt(now, ip, 2*time.Hour, 25*time.Hour, 50*time.Hour)
	out, err := set.Decide(context.Background(), ipAlert(ip), spread, now)
	if err != nil || out.Decisions[0].Until.Sub(now) >= 7*day {
		t.Errorf("bans spread over 3 days: %+v, %v", out.Decisions, err)
	}
}

func TestForever(t *testing.T) {
	src := `name: forever
filters: ["Alert.GetScenario() == 'worm'"]
decisions: [{type: ban, duration: forever}]
on_success: break
---
name: recidive_forever
filters: ["true"]
decisions: [{type: ban, duration: 1h}]
recidive: {bans: 2, within: 1h, duration: forever}
`
	set, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := ipAlert("198.18.2.2")
	a.Scenario = "worm"
	out, err := set.Decide(context.Background(), a, nil, now)
	if err != nil || len(out.Decisions) != 1 || !out.Decisions[0].Until.IsZero() {
		t.Fatalf("duration forever: %+v, %v", out.Decisions, err)
	}
	out, err = set.Decide(context.Background(), ipAlert("198.18.2.2"), banAt(now, "198.18.2.2", time.Minute), now)
	if err != nil || len(out.Decisions) != 1 || !out.Decisions[0].Until.IsZero() {
		t.Fatalf("recidive forever: %+v, %v", out.Decisions, err)
	}
	// Recidive never shortens: not a forever ban, nor an escalated one
	// longer than its own duration.
	set, err = Parse("s.yaml", []byte(`name: worms
filters: ["Alert.GetScenario() == 'worm'"]
decisions: [{type: ban, duration: forever}]
recidive: {bans: 2, within: 1h, duration: 1d}
on_success: break
---
name: long
filters: ["true"]
decisions: [{type: ban, duration: 4d}]
duration_escalation: {factor: 2, max: 30d}
recidive: {bans: 2, within: 1h, duration: 1d}
`))
	if err != nil {
		t.Fatal(err)
	}
	set.Rand = func() float64 { return 0.5 }
	twice := banAt(now, "198.18.2.4", time.Minute)
	a4 := ipAlert("198.18.2.4")
	a4.Scenario = "worm"
	if out, err = set.Decide(context.Background(), a4, twice, now); err != nil || len(out.Decisions) != 1 || !out.Decisions[0].Until.IsZero() {
		t.Fatalf("recidive shortened a forever ban: %+v, %v", out.Decisions, err)
	}
	out, err = set.Decide(context.Background(), ipAlert("198.18.2.4"), twice, now)
	if err != nil || len(out.Decisions) != 1 || out.Decisions[0].Until.Sub(now) != 8*day || strings.HasPrefix(out.Decisions[0].Reason, "recidive") {
		t.Fatalf("recidive shortened an escalated ban: %+v, %v", out.Decisions, err)
	}
	// duration_expr may say forever too.
	set, err = Parse("e.yaml", []byte("name: a\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 2h}]\nduration_expr: \"'forever'\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = set.Decide(context.Background(), ipAlert("198.18.2.3"), nil, now)
	if err != nil || len(out.Decisions) != 1 || !out.Decisions[0].Until.IsZero() || len(out.Warnings) != 0 {
		t.Fatalf("duration_expr forever: %+v, %v", out, err)
	}
}

func TestEscalationErrors(t *testing.T) {
	head := "name: p\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 4h}]\n"
	for _, tc := range []struct{ src, want string }{
		{"duration_escalation:\n  factor: 0.5\n", "x.yaml:5: profile p: duration_escalation: factor 0.5"},
		{"duration_escalation:\n  factor: 2\n  max: forever\n", "x.yaml:6: profile p: duration_escalation: max \"forever\""},
		{"duration_escalation:\n  factor: 2\n  jitter: 80%\n", "x.yaml:6: profile p: duration_escalation: jitter \"80%\""},
		{"duration_escalation:\n  factor: 2\n  decay_after: soon\n", "x.yaml:6: profile p: duration_escalation: decay_after \"soon\""},
		{"duration_escalation:\n  factor: 2\n  speed: 3\n", "x.yaml:6"},
		{"duration_expr: \"'1h'\"\nduration_escalation: {factor: 2}\n", "x.yaml:5: profile p: duration_escalation and duration_expr"},
		{"recidive:\n  bans: 1\n  within: 1h\n  duration: 1d\n", "x.yaml:5: profile p: recidive: bans 1"},
		{"recidive:\n  bans: 3\n  within: forever\n  duration: 1d\n", "x.yaml:6: profile p: recidive: within \"forever\""},
		{"recidive:\n  bans: 3\n  within: 1h\n  duration: 0s\n", "x.yaml:7: profile p: recidive: duration \"0s\""},
	} {
		_, err := Parse("x.yaml", []byte(head+tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
