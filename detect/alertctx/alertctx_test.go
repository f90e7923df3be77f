package alertctx_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/alertctx"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/scenario"
	"github.com/moatsec/moat/internal/testutil"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func event(at time.Time, meta, parsed map[string]string) *detect.Event {
	e := detect.NewEvent(detect.Line{Raw: "test", Module: "test", ReadAt: at, Process: true})
	e.Time = at
	for k, v := range meta {
		e.Meta[k] = v
	}
	for k, v := range parsed {
		e.Parsed[k] = v
	}
	return e
}

// pour feeds events to the set as the engine does: the engine's hold
// around the pour, then the parsed fields given back unless a bucket
// reader needs them.
func pour(set *scenario.Set, evts []*detect.Event) []scenario.Overflow {
	var out []scenario.Overflow
	for _, e := range evts {
		e.Hold()
		out = append(out, set.PourOverflows(e)...)
		if !e.Release() {
			e.TakeParsed()
		}
	}
	return out
}

// A context file evaluated on an overflow: values from every event the
// bucket held, deduplicated, in order, invalid UTF-8 replaced and a long
// value cut; a parsed field read although buckets give parsed fields back;
// a key without any value left out.
func TestOverflowContext(t *testing.T) {
	env := exprenv.New("")
	ctx, err := alertctx.Load([]string{"testdata/context.yaml"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ctx.Keys(), []string{"host", "port", "target_uri", "target_user", "user_agent"}; !cmp.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
	if !ctx.NeedsParsed() {
		t.Error("NeedsParsed = false for a context reading evt.Parsed")
	}
	set, err := scenario.Load([]string{"testdata/scenario.yaml"}, scenario.Options{Env: env, Context: ctx})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 2000)
	users := []string{"root", "root", "ad\xffmin", long, "' OR 1=1 --\x1b[31m"}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var evts []*detect.Event
	for i, u := range users {
		meta := map[string]string{"log_type": "auth_failed", "source_ip": "192.0.2.7", "target_user": u, "service": "tcp"}
		parsed := map[string]string{"dst_port": "22"}
		if i == 0 {
			meta["http_path"] = "/wp-login.php"
			parsed["http_user_agent"] = "curl/8.5"
		}
		evts = append(evts, event(t0.Add(time.Duration(i)*time.Second), meta, parsed))
	}
	ovs := pour(set, evts)
	if len(ovs) != 1 {
		t.Fatalf("%d overflows, want 1", len(ovs))
	}
	got := ovs[0].Alert.Context
	want := map[string][]string{
		"target_user": {"root", "ad\uFFFDmin", strings.Repeat("x", alertctx.MaxValueLen-len("…")) + "…", "' OR 1=1 --\x1b[31m"},
		"target_uri":  {"/wp-login.php"},
		"user_agent":  {"curl/8.5"},
		"port":        {"tcp:22"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("context (-want +got):\n%s", d)
	}
	for _, a := range ovs[0].Alerts() {
		if len(a.Context) != len(want) {
			t.Errorf("alert for %s: context %v", a.Value, a.Context)
		}
	}
}

// Contexts reading meta only let buckets give back parsed fields; an
// attacker's flood of distinct values keeps MaxValues of them, and only
// the newest MaxEvents events are read.
func TestBounds(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	writeFile(t, f, "context:\n  user: [evt.Meta.target_user, evt.GetMeta('target_user')]\n  list: [\"split(evt.Meta.target_user, '-')\"]\n")
	ctx, err := alertctx.Load([]string{f}, exprenv.New(""))
	if err != nil {
		t.Fatal(err)
	}
	if ctx.NeedsParsed() {
		t.Error("NeedsParsed = true for a context reading meta only")
	}
	var evts []*detect.Event
	for i := range alertctx.MaxEvents + 100 {
		evts = append(evts, event(time.Time{}, map[string]string{"target_user": fmt.Sprintf("u%d-x", i)}, nil))
	}
	got := ctx.Eval(evts)
	if n := len(got["user"]); n != alertctx.MaxValues {
		t.Errorf("%d values, want %d", n, alertctx.MaxValues)
	}
	if got["user"][0] != "u100-x" {
		t.Errorf("first value %q, want the oldest of the newest %d events (u100-x)", got["user"][0], alertctx.MaxEvents)
	}
	if l := got["list"]; len(l) != alertctx.MaxValues || l[0] != "u100" || l[1] != "x" {
		t.Errorf("list values = %q", l)
	}
	if got := ctx.Eval(nil); got != nil {
		t.Errorf("Eval(nil) = %v", got)
	}
	var none *alertctx.Contexts
	if none.Eval(evts) != nil || none.NeedsParsed() || none.Errors() != 0 {
		t.Error("a nil Contexts is not empty")
	}
}

// A run that fails (a conversion) gives no value and is counted; AppSec's
// match gives nothing.
func TestEvalErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	writeFile(t, f, "context:\n  name:\n    - int(evt.Meta.name)\n    - match.name\n    - evt.Meta.name\n")
	ctx, err := alertctx.Load([]string{f}, exprenv.New(""))
	if err != nil {
		t.Fatal(err)
	}
	got := ctx.Eval([]*detect.Event{event(time.Time{}, map[string]string{"name": "a"}, nil)})
	if !cmp.Equal(got, map[string][]string{"name": {"a"}}) || ctx.Errors() != 1 {
		t.Errorf("Eval = %v, errors %d; want name [a], 1 error", got, ctx.Errors())
	}
}

func TestLoadErrorLines(t *testing.T) {
	want := map[string]string{
		"unknown-key.yaml": `load context: testdata/bad/unknown-key.yaml:4: unknown key "contexts"`,
		"compile.yaml":     `testdata/bad/compile.yaml:6: context key uri: compile "evt.Meta.http_path +"`,
		"empty.yaml":       "testdata/bad/empty.yaml:4: context key uri: no expressions",
		"keyname.yaml":     `testdata/bad/keyname.yaml:2: context key "user name": want letters`,
		"none.yaml":        "testdata/bad/none.yaml:2: no context keys",
	}
	testutil.ErrorLines(t, "testdata/bad/*.yaml", want, func(t *testing.T, f string) error {
		_, err := alertctx.Load([]string{f}, exprenv.New(""))
		if err == nil {
			t.Fatal("Load succeeded")
		}
		return err
	})
}

// The hub's context files load unchanged, but AppSec's, which calls the
// AppSec engine's helpers.
func TestHubContexts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testutil.Shared(t, "crowdsec-hub/hub"), "contexts", "*", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no hub contexts: %v", err)
	}
	for _, f := range files {
		_, err := alertctx.Load([]string{f}, exprenv.New(""))
		if filepath.Base(f) == "appsec_base.yaml" {
			var le *alertctx.LoadError
			if !errors.As(err, &le) {
				t.Errorf("%s: %v, want a LoadError (JA4H is AppSec's)", f, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
