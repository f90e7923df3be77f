package profile

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
	"github.com/moatsec/moat/packaging"
)

// history is a Counter over decisions kept in memory.
type history struct{ taken map[string][]time.Time }

func (h *history) CountDecisions(_ context.Context, value string, since time.Time) (int, error) {
	n := 0
	for _, t := range h.taken[value] {
		if !t.Before(since) {
			n++
		}
	}
	return n, nil
}

func ipAlert(ip string) model.Alert {
	a := netip.MustParseAddr(ip)
	return model.Alert{Scenario: "crowdsecurity/ssh-bf", Scope: model.ScopeIP, Value: ip, Source: netip.PrefixFrom(a, a.BitLen()), Remediation: true, Message: "ssh bf"}
}

func TestDefaultProfilesEscalate(t *testing.T) {
	set, err := Parse("packaging/profiles.yaml", packaging.DefaultProfiles)
	if err != nil {
		t.Fatal(err)
	}
	h := &history{taken: map[string][]time.Time{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []time.Duration{4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 32 * time.Hour, 64 * time.Hour, 128 * time.Hour, 128 * time.Hour}
	for i, w := range want {
		out, err := set.Decide(context.Background(), ipAlert("198.18.0.7"), h, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Decisions) != 1 || len(out.Warnings) != 0 {
			t.Fatalf("alert %d: got %+v", i, out)
		}
		d := out.Decisions[0]
		if got := d.Until.Sub(now); got != w {
			t.Errorf("alert %d: duration %s, want %s", i, got, w)
		}
		if d.Type != "ban" || d.Origin != model.OriginLocal || d.Value != netip.MustParsePrefix("198.18.0.7/32") || out.Profile != "default_ip_remediation" {
			t.Errorf("alert %d: decision %+v profile %s", i, d, out.Profile)
		}
		h.taken["198.18.0.7"] = append(h.taken["198.18.0.7"], now)
	}
	// Another address starts over.
	out, err := set.Decide(context.Background(), ipAlert("2001:db8::9"), h, now)
	if err != nil || len(out.Decisions) != 1 || out.Decisions[0].Until.Sub(now) != 4*time.Hour {
		t.Fatalf("fresh address: %+v, %v", out, err)
	}
	// A range is banned by the second profile; no remediation, no decision.
	r := model.Alert{Scenario: "x", Scope: model.ScopeRange, Value: "198.18.4.0/24", Source: netip.MustParsePrefix("198.18.4.0/24"), Remediation: true}
	out, err = set.Decide(context.Background(), r, h, now)
	if err != nil || len(out.Decisions) != 1 || out.Profile != "default_range_remediation" || out.Decisions[0].Until.Sub(now) != 4*time.Hour {
		t.Fatalf("range: %+v, %v", out, err)
	}
	r.Remediation = false
	out, err = set.Decide(context.Background(), r, h, now)
	if err != nil || len(out.Decisions) != 0 {
		t.Fatalf("no remediation: %+v, %v", out, err)
	}
}

func TestFlowAndHelpers(t *testing.T) {
	src := `name: ssh_long
debug: true
filters:
  - Alert.GetScenario() contains "ssh" && Alert.GetEventsCount() >= 5
decisions:
  - type: ban
    duration: 24h
duration_expr: "GetDecisionsSinceCount(Alert.GetValue(), '1h') > 0 ? '48h' : '24h'"
on_success: continue
---
name: captcha_all
filters:
  - Alert.Remediation
decisions:
  - type: captcha
    duration: 1h
on_success: break
---
name: never_reached
filters:
  - true
decisions:
  - type: ban
    duration: 1m
`
	set, err := Parse("inline.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := &history{taken: map[string][]time.Time{"198.18.0.1": {now.Add(-30 * time.Minute)}}}
	a := ipAlert("198.18.0.1")
	a.EventsCount = 6
	out, err := set.Decide(context.Background(), a, h, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Decisions) != 2 || out.Decisions[0].Until.Sub(now) != 48*time.Hour || out.Decisions[1].Type != "captcha" {
		t.Fatalf("got %+v", out.Decisions)
	}
	if len(out.Trace) == 0 || !strings.Contains(strings.Join(out.Trace, "\n"), "ssh_long") {
		t.Errorf("debug trace missing: %q", out.Trace)
	}
	a.EventsCount = 1
	out, _ = set.Decide(context.Background(), a, h, now)
	if len(out.Decisions) != 1 || out.Decisions[0].Type != "captcha" {
		t.Fatalf("got %+v", out.Decisions)
	}

	// on_failure: break stops at the first profile that does not match.
	set, err = Parse("inline.yaml", []byte("name: a\nfilters: [\"false\"]\non_failure: break\n---\nname: b\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 1h}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ = set.Decide(context.Background(), a, h, now)
	if len(out.Decisions) != 0 {
		t.Fatalf("on_failure break: got %+v", out.Decisions)
	}
}

func TestBadDurationExprFallsBack(t *testing.T) {
	set, err := Parse("x.yaml", []byte("name: a\nfilters: [\"true\"]\ndecisions: [{type: ban, duration: 2h}]\nduration_expr: \"'soon'\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	out, err := set.Decide(context.Background(), ipAlert("198.18.0.2"), nil, now)
	if err != nil || len(out.Decisions) != 1 || out.Decisions[0].Until.Sub(now) != 2*time.Hour || len(out.Warnings) != 1 {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestBadFiles(t *testing.T) {
	want := map[string]string{
		"unknown_key.bad.yaml":  `unknown_key.bad.yaml:4: unknown key "decision"`,
		"bad_expr.bad.yaml":     `bad_expr.bad.yaml:11: profile broken: filter "Alert.NoSuchField == 3"`,
		"bad_duration.bad.yaml": `bad_duration.bad.yaml:5: profile p: decision duration "someday"`,
		"bad_flow.bad.yaml":     `bad_flow.bad.yaml:4: profile p: on_success "stop"`,
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(want) {
		t.Fatalf("have %d bad files, expectations for %d", len(files), len(want))
	}
	for _, f := range files {
		_, err := Load(f)
		if err == nil {
			t.Errorf("%s: loaded", f)
			continue
		}
		if !strings.Contains(err.Error(), want[filepath.Base(f)]) {
			t.Errorf("%s: error %q, want it to contain %q", f, err, want[filepath.Base(f)])
		}
		if ye := (*yamlerr.Error)(nil); !errors.As(err, &ye) {
			t.Errorf("%s: error %T is not the loaders' one form", f, err)
		}
	}
	if _, err := Parse("empty.yaml", nil); err == nil {
		t.Error("empty file loaded")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
