package scenario

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/yamlerr"
)

// Origin is where an effective value was set: a line of a hub file or of
// moat.yaml, or, with Line 0, a description ("default", "profiles").
type Origin struct {
	File string
	Line int
}

func (o Origin) String() string {
	if o.Line > 0 {
		return fmt.Sprintf("%s:%d", o.File, o.Line)
	}
	return o.File
}

// Origins of values no file sets.
var (
	// OriginDefault: the hub file leaves the key out.
	OriginDefault = Origin{File: "default"}
	// OriginProfiles: the ban duration is the profiles' to choose.
	OriginProfiles = Origin{File: "profiles"}
	// OriginSimulationList: Options.Simulated names the scenario.
	OriginSimulationList = Origin{File: "simulation list"}
)

// Override tunes the scenarios whose name matches Name without editing
// their hub files (moat.yaml's scenarios: section). Name is a glob: "*"
// matches any run of characters, "/" included, and "?" one character.
// A nil field leaves the value as it was.
type Override struct {
	Name string
	// At is where the override was written; KeyAt where each of its keys
	// was (a key missing there takes At).
	At    Origin
	KeyAt map[string]Origin

	Enabled   *bool
	Capacity  *int
	LeakSpeed *time.Duration
	Blackhole *time.Duration
	// Duration is the ban duration of the scenario's alerts: it replaces
	// the duration the profiles would choose (duration_expr included).
	Duration *time.Duration
	// Simulate marks the scenario's alerts, and so their decisions,
	// simulated: stored and shown, never enforced.
	Simulate *bool
}

// Override keys, as moat.yaml spells them; Info.From is keyed by them.
const (
	KeyEnabled   = "enabled"
	KeyCapacity  = "capacity"
	KeyLeakSpeed = "leakspeed"
	KeyBlackhole = "blackhole"
	KeyDuration  = "duration"
	KeySimulate  = "simulate"
)

func (o *Override) keyAt(key string) Origin {
	if at, ok := o.KeyAt[key]; ok {
		return at
	}
	return o.At
}

// IsGlob reports whether name has glob characters.
func IsGlob(name string) bool { return strings.ContainsAny(name, "*?") }

// globRE compiles a glob: with "*" crossing "/", "crowdsecurity/*" and
// "*" select whole collections, which per-segment globbing would not.
func globRE(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// overrides is a list of Overrides in the order they apply: globs first,
// then exact names, each group in the order written, so an override naming
// a scenario beats a glob and, among equals, the later one wins key by key.
type overrides struct {
	list    []*Override
	res     []*regexp.Regexp
	matched []bool
}

func newOverrides(in []Override) *overrides {
	o := &overrides{}
	for _, exact := range []bool{false, true} {
		for i := range in {
			if IsGlob(in[i].Name) == exact {
				continue
			}
			ov := in[i]
			o.list = append(o.list, &ov)
			o.res = append(o.res, globRE(ov.Name))
		}
	}
	o.matched = make([]bool, len(o.list))
	return o
}

// effective is the merge of every override matching one scenario name,
// with where each value came from.
type effective struct {
	enabled, simulate              *bool
	capacity                       *int
	leakspeed, blackhole, duration *time.Duration
	from                           map[string]Origin
	// byGlob are the keys a glob set last: they skip the scenario types
	// that have no such setting, where a name would be an error.
	byGlob map[string]bool
}

// resolve merges the overrides matching name and marks them used.
func (o *overrides) resolve(name string) effective {
	e := effective{from: map[string]Origin{}, byGlob: map[string]bool{}}
	for i, ov := range o.list {
		if !o.res[i].MatchString(name) {
			continue
		}
		o.matched[i] = true
		if ov.Capacity != nil {
			e.byGlob[KeyCapacity] = IsGlob(ov.Name)
		}
		if ov.LeakSpeed != nil {
			e.byGlob[KeyLeakSpeed] = IsGlob(ov.Name)
		}
		if ov.Enabled != nil {
			e.enabled, e.from[KeyEnabled] = ov.Enabled, ov.keyAt(KeyEnabled)
		}
		if ov.Capacity != nil {
			e.capacity, e.from[KeyCapacity] = ov.Capacity, ov.keyAt(KeyCapacity)
		}
		if ov.LeakSpeed != nil {
			e.leakspeed, e.from[KeyLeakSpeed] = ov.LeakSpeed, ov.keyAt(KeyLeakSpeed)
		}
		if ov.Blackhole != nil {
			e.blackhole, e.from[KeyBlackhole] = ov.Blackhole, ov.keyAt(KeyBlackhole)
		}
		if ov.Duration != nil {
			e.duration, e.from[KeyDuration] = ov.Duration, ov.keyAt(KeyDuration)
		}
		if ov.Simulate != nil {
			e.simulate, e.from[KeySimulate] = ov.Simulate, ov.keyAt(KeySimulate)
		}
	}
	return e
}

// apply writes the overridden values into a spec before it is compiled,
// so the type checks of the hub file hold for them too: an override naming
// a trigger cannot give it a capacity. A glob's capacity only reaches leaky
// scenarios and its leakspeed only those that leak; e is updated to say so.
func (e *effective) apply(sp Spec) Spec {
	if e.capacity != nil && e.byGlob[KeyCapacity] && sp.Type != "leaky" {
		e.capacity = nil
		delete(e.from, KeyCapacity)
	}
	if e.leakspeed != nil && e.byGlob[KeyLeakSpeed] && (sp.Type == "trigger" || sp.Type == "counter") {
		e.leakspeed = nil
		delete(e.from, KeyLeakSpeed)
	}
	if e.capacity != nil {
		sp.Capacity = *e.capacity
	}
	if e.leakspeed != nil {
		sp.LeakSpeed = e.leakspeed.String()
	}
	if e.blackhole != nil {
		sp.Blackhole = e.blackhole.String()
	}
	return sp
}

// errAt relocates a compile error about a key an override set to the
// override's line: the hub file is not where the fix goes.
func (e effective) errAt(err error, name string) (*LoadError, bool) {
	var ke *yamlerr.KeyError
	if !errors.As(err, &ke) || len(ke.Path) == 0 {
		return nil, false
	}
	key, _ := ke.Path[0].(string)
	at, ok := e.from[key]
	if !ok || key == KeyEnabled || key == KeySimulate || key == KeyDuration {
		return nil, false
	}
	return &LoadError{File: at.File, Line: at.Line, Name: name, Err: fmt.Errorf("override: %w", err)}, true
}

// unmatched are warnings for the overrides no loaded scenario matched:
// a typo in a name would otherwise tune nothing, silently.
func (o *overrides) unmatched() []error {
	var out []error
	for i, ov := range o.list {
		if !o.matched[i] {
			out = append(out, &LoadError{File: ov.At.File, Line: ov.At.Line,
				Err: fmt.Errorf("scenario override %s matches no loaded scenario", yamlerr.Excerpt(ov.Name))})
		}
	}
	return out
}

// Info is a loaded scenario's effective settings, and where each came
// from (From, keyed by the Key* names).
type Info struct {
	Name string
	Type string
	// File and Line locate the scenario in the hub.
	File string
	Line int
	// Enabled is false for a scenario an override turned off: it is not
	// loaded, and its other values are the hub file's.
	Enabled   bool
	Capacity  int
	LeakSpeed time.Duration
	Blackhole time.Duration
	// Duration is the ban duration of its alerts; 0 leaves it to the
	// profiles.
	Duration  time.Duration
	Simulated bool
	From      map[string]Origin
}

// info describes one scenario of file f whose document starts at line and
// whose nodes are doc: sp as loaded (overridden), e the overrides.
func info(sp Spec, f string, line int, doc hubDoc, e effective, sim bool) Info {
	in := Info{Name: sp.Name, Type: sp.Type, File: f, Line: line, Enabled: true, Capacity: sp.Capacity, Simulated: sim, From: map[string]Origin{}}
	in.LeakSpeed, _ = time.ParseDuration(sp.LeakSpeed)
	in.Blackhole, _ = time.ParseDuration(sp.Blackhole)
	for _, k := range []string{KeyCapacity, KeyLeakSpeed, KeyBlackhole} {
		in.From[k] = doc.origin(f, k)
	}
	in.From[KeyEnabled] = OriginDefault
	in.From[KeyDuration] = OriginProfiles
	in.From[KeySimulate] = OriginDefault
	if sim {
		in.From[KeySimulate] = OriginSimulationList
	}
	for k, at := range e.from {
		in.From[k] = at
	}
	if e.enabled != nil {
		in.Enabled = *e.enabled
	}
	if e.duration != nil {
		in.Duration = *e.duration
	}
	if e.simulate != nil {
		in.Simulated = *e.simulate
	}
	return in
}

// Scenarios describes every scenario Load read, those overrides disabled
// included, in load order.
func (s *Set) Scenarios() []Info {
	out := make([]Info, len(s.infos))
	copy(out, s.infos)
	return out
}

// hubDoc is a scenario document's nodes, to say on which line a key was set.
type hubDoc struct{ n *yaml.Node }

// origin is the line of key in the document, or OriginDefault when the
// document leaves it out.
func (d hubDoc) origin(f, key string) Origin {
	n := d.n
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return OriginDefault
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return Origin{File: f, Line: n.Content[i].Line}
		}
	}
	return OriginDefault
}
