package scenario

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
)

// hubHTTPSet loads every loadable scenario of the shared hub and moat's
// shipped ones into env, guards on or off.
func hubHTTPSet(t *testing.T, env *exprenv.Env, noGuards bool) *Set {
	t.Helper()
	var files []string
	root := filepath.Dir(filepath.Dir(hubScenarioFiles(t)[0]))
	for _, f := range hubScenarioFiles(t) {
		rel, _ := filepath.Rel(root, f)
		if _, skip := knownUnloadable[filepath.ToSlash(rel)]; !skip {
			files = append(files, f)
		}
	}
	shipped, err := filepath.Glob("../../packaging/hub/scenarios/moat/*.yaml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("shipped scenarios: %v", err)
	}
	s, err := Load(append(files, shipped...), Options{Env: env, NoGuards: noGuards})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGuardsMatchFilters: on events made of the very literals the guards
// look for (cut, joined, case-folded, among noise), every scenario of the
// shared hub and of moat's content is matched the same with guards and
// without: guards only skip filters that would be false.
func TestGuardsMatchFilters(t *testing.T) {
	env := hubEnv(t)
	guarded, plain := hubHTTPSet(t, env, false), hubHTTPSet(t, env, true)
	if guarded.guards == nil {
		t.Fatal("no scenario of the hub has a guard")
	}
	n := 0
	for _, cl := range guarded.guards.of {
		if cl != nil {
			n++
		}
	}
	t.Logf("%d of %d scenarios guarded, over %d terms", n, len(guarded.scenarios), len(guarded.guards.terms))
	if n < 50 {
		t.Fatalf("%d scenarios guarded, want the hub's HTTP probes (50 or more)", n)
	}
	var pool []string
	for _, gt := range guarded.guards.terms {
		pool = append(pool, gt.lits...)
		for l := range gt.equal {
			pool = append(pool, l)
		}
	}
	slices.Sort(pool)
	pool = slices.Compact(pool)
	fields := map[string]map[string]bool{"Meta": {}, "Parsed": {}}
	ref := regexp.MustCompile(`evt\.(Meta|Parsed)\.(\w+)`)
	for _, sc := range guarded.scenarios {
		for _, m := range ref.FindAllStringSubmatch(sc.spec.Filter, -1) {
			fields[m[1]][m[2]] = true
		}
	}
	metaKeys, parsedKeys := slices.Sorted(maps.Keys(fields["Meta"])), slices.Sorted(maps.Keys(fields["Parsed"]))
	rng := rand.New(rand.NewPCG(7, 7))
	noise := []string{"", "/", "?", "=", "a", "%2e", "..", "index.php", " ", "Mozilla/5.0", "POST", "GET", "ı", "é", "ſ"}
	value := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			p := pool[rng.IntN(len(pool))]
			if rng.IntN(3) == 0 {
				p = noise[rng.IntN(len(noise))]
			}
			switch rng.IntN(6) {
			case 0:
				p = strings.ToLower(p)
			case 1:
				p = strings.ToUpper(p)
			case 2:
				if len(p) > 1 {
					p = p[rng.IntN(len(p)):]
				}
			}
			b.WriteString(p)
		}
		return b.String()
	}
	evts := make([]*detect.Event, 4000)
	for i := range evts {
		evt := detect.NewEvent(detect.Line{Raw: "x"})
		evt.Meta["service"] = "http"
		evt.Meta["log_type"] = []string{"http_access-log", "http_error-log"}[rng.IntN(2)]
		evt.Meta["http_status"] = []string{"200", "400", "401", "403", "404", "405"}[rng.IntN(6)]
		for _, k := range metaKeys {
			if _, set := evt.Meta[k]; !set && rng.IntN(4) != 0 {
				evt.Meta[k] = value()
			}
		}
		for _, k := range parsedKeys {
			if rng.IntN(4) != 0 {
				evt.Parsed[k] = value()
			}
		}
		evts[i] = evt
	}
	// Each event twice, so that the second is served by the scan caches,
	// and again with caches so small that they start over all the time.
	small := guarded.NewMatcher()
	small.guard.seenBytes = 2 * seenEntryCost
	for _, pass := range []struct {
		name string
		m    *Matcher
	}{{"first", guarded.NewMatcher()}, {"second", nil}, {"small caches", small}} {
		mg := pass.m
		if mg == nil {
			mg = guarded.NewMatcher()
			for _, evt := range evts {
				mg.Match(evt, &Matches{})
			}
		}
		mp := plain.NewMatcher()
		var got, want Matches
		hits := 0
		for i, evt := range evts {
			mg.Match(evt, &got)
			mp.Match(evt, &want)
			if g, w := describe(&got), describe(&want); g != w {
				t.Fatalf("%s pass, event %d (meta %v, parsed %v):\nwith guards    %s\nwithout guards %s", pass.name, i, evt.Meta, evt.Parsed, g, w)
			}
			hits += len(want.hits)
		}
		cached := 0
		for _, c := range mg.guard.seen {
			cached += len(c.m)
		}
		t.Logf("%s pass: %d scenario hits over the events, %d values cached", pass.name, hits, cached)
		if cached == 0 {
			t.Errorf("%s pass: no value cached", pass.name)
		}
		if hits < 1000 {
			t.Errorf("%s pass: %d scenario hits over the events: too few to tell guards from filters", pass.name, hits)
		}
	}
}

func describe(m *Matches) string {
	var b strings.Builder
	for _, h := range m.hits {
		fmt.Fprintf(&b, "%s/%s ", h.sc.spec.Name, h.key)
	}
	for _, sc := range m.errs {
		fmt.Fprintf(&b, "err:%s ", sc.spec.Name)
	}
	for _, sc := range m.untimed {
		fmt.Fprintf(&b, "untimed:%s ", sc.spec.Name)
	}
	return b.String()
}
