package scenario

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/yamlerr"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/internal/model"
)

// Spec is one scenario document as the hub writes it. Field names and YAML
// keys are CrowdSec's, so hub files decode unchanged; unknown keys are errors.
type Spec struct {
	Format      string         `yaml:"format"`
	Author      string         `yaml:"author"`
	Name        string         `yaml:"name"`
	Version     string         `yaml:"version"`
	Description string         `yaml:"description"`
	References  []string       `yaml:"references"`
	Type        string         `yaml:"type"`
	Filter      string         `yaml:"filter"`
	GroupBy     string         `yaml:"groupby"`
	Distinct    string         `yaml:"distinct"`
	Capacity    int            `yaml:"capacity"`
	LeakSpeed   string         `yaml:"leakspeed"`
	Duration    string         `yaml:"duration"`
	Blackhole   string         `yaml:"blackhole"`
	Debug       bool           `yaml:"debug"`
	Reprocess   bool           `yaml:"reprocess"`
	CacheSize   int            `yaml:"cache_size"`
	Profiling   bool           `yaml:"profiling"`
	Labels      map[string]any `yaml:"labels"`
	// OverflowFilter must return true for an overflow to be kept.
	OverflowFilter string `yaml:"overflow_filter"`
	// CancelOn kills the bucket, without overflow, when an event matches.
	CancelOn  string `yaml:"cancel_on"`
	Condition string `yaml:"condition"`
	Scope     struct {
		Type       string `yaml:"type"`
		Expression string `yaml:"expression"`
	} `yaml:"scope"`
	Data               []exprenv.DataSpec  `yaml:"data"`
	BayesianPrior      float32             `yaml:"bayesian_prior"`
	BayesianThreshold  float32             `yaml:"bayesian_threshold"`
	BayesianConditions []BayesianCondition `yaml:"bayesian_conditions"`
	// Simulated is accepted for compatibility with dumped CrowdSec specs;
	// Options.Simulated is what moat reads.
	Simulated bool `yaml:"simulated"`
}

// BayesianCondition is one evidence of a bayesian scenario.
type BayesianCondition struct {
	Condition       string  `yaml:"condition"`
	ProbGivenEvil   float32 `yaml:"prob_given_evil"`
	ProbGivenBenign float32 `yaml:"prob_given_benign"`
	Guillotine      bool    `yaml:"guillotine"`
}

type kind uint8

const (
	kindLeaky kind = iota
	kindTrigger
	kindCounter
	kindConditional
	kindBayesian
)

// maxFormat is the newest scenario format moat understands, as CrowdSec's
// scenario constraint.
const maxFormat = 3.0

// scenario is a compiled Spec.
type scenario struct {
	idx       int
	spec      Spec
	file      string
	line      int
	hash      string
	kind      kind
	leakspeed time.Duration
	// room is a full leaky bucket's credit: capacity leaks (see allow).
	room time.Duration
	// lifetime is how long a bucket lives after its last pour (CrowdSec's
	// bucket Duration); for counters it runs from the first pour.
	lifetime  time.Duration
	blackhole time.Duration
	qsize     int // -1: unbounded
	simulated bool
	// banDuration is an override's ban duration for the alerts (0: the
	// profiles choose).
	banDuration time.Duration

	// Expressions over one event also run natively where they can.
	filter, groupby, distinct, cancelOn  *exprenv.Program
	condition, overflowFilter, scopeExpr *vm.Program
	bayes                                []bayesCond

	reqs      []requirement
	scope     string
	labels    map[string]string
	remediate bool
	// tab holds the scenario's partitions by groupby value; scenarios
	// with the same name and filter share it.
	tab *table
	// readsQueue: the scenario's expressions may read more of the events
	// its buckets hold than their Meta.
	readsQueue bool

	stats ScenarioStats
}

type bayesCond struct {
	prog       *vm.Program
	evil       float32
	benign     float32
	guillotine bool
}

// LoadError names the file and line of a scenario that cannot be loaded.
type LoadError struct {
	File string
	Line int
	Name string
	Err  error
}

func (e *LoadError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("%s:%d: scenario %s: %v", e.File, e.Line, e.Name, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// readFile decodes every document of one scenario file; with each spec
// come the line it starts at and its nodes, where compile's errors find
// the line of their key (yamlerr.LineFor).
func readFile(path string) ([]Spec, []int, []*yaml.Node, string, error) {
	raw, err := yamlerr.ReadFile(path, yamlerr.MaxHubFile)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("load scenario %s: %w", path, err)
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:])

	// The node pass finds where each document starts and which are empty;
	// the struct pass does the strict decoding (KnownFields is lost inside
	// node.Decode, so the two passes stay separate).
	var lines []int
	var empty []bool
	var nodes []*yaml.Node
	nd := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		n := new(yaml.Node)
		err := nd.Decode(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, nil, "", yamlerr.Wrap(path, err)
		}
		nodes = append(nodes, n)
		line := n.Line
		isEmpty := len(n.Content) == 0
		if len(n.Content) > 0 {
			line = n.Content[0].Line
			isEmpty = n.Content[0].Tag == "!!null"
		}
		lines = append(lines, line)
		empty = append(empty, isEmpty)
	}
	var specs []Spec
	var specLines []int
	var specNodes []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	for i := 0; ; i++ {
		var s Spec
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			break
		}
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		if err != nil {
			return nil, nil, nil, "", yamlerr.Wrap(path, err)
		}
		if i < len(empty) && empty[i] {
			continue
		}
		var node *yaml.Node
		if i < len(nodes) {
			node = nodes[i]
		}
		specs = append(specs, s)
		specLines = append(specLines, line)
		specNodes = append(specNodes, node)
	}
	return specs, specLines, specNodes, hash, nil
}

// compile validates a spec and compiles its expressions.
func compile(sp Spec, env *exprenv.Env) (*scenario, []error, error) {
	sc := &scenario{spec: sp, qsize: sp.Capacity}
	if err := checkHeader(sp); err != nil {
		return nil, nil, err
	}
	duration, err := parseDurations(sp, sc)
	if err != nil {
		return nil, nil, err
	}
	if err := checkType(sp, sc, duration); err != nil {
		return nil, nil, err
	}
	sizeBuckets(sp, sc, duration)

	// A data file that cannot be read leaves the scenario loaded, as in
	// CrowdSec: the helpers reading it then see an empty file.
	var warns []error
	for i, d := range sp.Data {
		if err := env.LoadData(d); err != nil {
			warns = append(warns, yamlerr.AtKey(fmt.Errorf("data %s: %w", d.DestFile, err), "data", i))
		}
	}

	if err := compileExprs(sp, sc, env); err != nil {
		return nil, nil, err
	}
	if err := resolveScope(sp, sc); err != nil {
		return nil, nil, err
	}
	sc.labels, sc.remediate = flattenLabels(sp.Labels)
	sc.reqs = requirements(sp.Filter)
	sc.readsQueue = sc.kind == kindConditional || sc.kind == kindBayesian || sc.overflowFilter != nil || sc.scopeExpr != nil
	return sc, warns, nil
}

// checkHeader checks what every spec must say of itself before its
// behaviour is read.
func checkHeader(sp Spec) error {
	if sp.Name == "" {
		return yamlerr.AtKey(errors.New("scenario without name"), "name")
	}
	if sp.Description == "" {
		return yamlerr.AtKey(errors.New("description is mandatory"), "description")
	}
	if sp.Format != "" {
		f, err := strconv.ParseFloat(sp.Format, 64)
		if err != nil {
			return yamlerr.AtKey(fmt.Errorf("bad format %q", sp.Format), "format")
		}
		if f > maxFormat {
			return yamlerr.AtKey(fmt.Errorf("format %s is newer than the supported %.1f", sp.Format, maxFormat), "format")
		}
	}
	return nil
}

// parseDurations sets sc's leakspeed and blackhole and returns the
// duration, which only counters keep, as their lifetime.
func parseDurations(sp Spec, sc *scenario) (time.Duration, error) {
	var err error
	if sp.LeakSpeed != "" {
		if sc.leakspeed, err = time.ParseDuration(sp.LeakSpeed); err != nil {
			return 0, yamlerr.AtKey(fmt.Errorf("bad leakspeed %q: %w", sp.LeakSpeed, err), "leakspeed")
		}
	}
	var duration time.Duration
	if sp.Duration != "" {
		if duration, err = time.ParseDuration(sp.Duration); err != nil {
			return 0, yamlerr.AtKey(fmt.Errorf("bad duration %q: %w", sp.Duration, err), "duration")
		}
	}
	if sp.Blackhole != "" {
		if sc.blackhole, err = time.ParseDuration(sp.Blackhole); err != nil {
			return 0, yamlerr.AtKey(fmt.Errorf("bad blackhole %q: %w", sp.Blackhole, err), "blackhole")
		}
	}
	return duration, nil
}

// checkType sets sc's kind and checks the settings that kind needs.
func checkType(sp Spec, sc *scenario, duration time.Duration) error {
	switch sp.Type {
	case "leaky":
		sc.kind = kindLeaky
		if sp.Capacity <= 0 {
			return yamlerr.AtKey(fmt.Errorf("bad capacity for leaky %d", sp.Capacity), "capacity")
		}
		if sc.leakspeed <= 0 {
			return yamlerr.AtKey(errors.New("leaky needs a positive leakspeed"), "leakspeed")
		}
	case "trigger":
		sc.kind = kindTrigger
		if sp.Capacity != 0 {
			return yamlerr.AtKey(errors.New("trigger must have capacity 0"), "capacity")
		}
	case "counter":
		sc.kind = kindCounter
		if duration <= 0 {
			return yamlerr.AtKey(errors.New("counter needs a positive duration"), "duration")
		}
		if sp.Capacity != -1 {
			return yamlerr.AtKey(errors.New("counter must have capacity -1"), "capacity")
		}
	case "conditional":
		sc.kind = kindConditional
		if sp.Condition == "" {
			return errors.New("conditional needs a condition")
		}
		if sc.leakspeed <= 0 {
			return yamlerr.AtKey(errors.New("conditional needs a positive leakspeed"), "leakspeed")
		}
	case "bayesian":
		sc.kind = kindBayesian
		if len(sp.BayesianConditions) == 0 {
			return errors.New("bayesian needs bayesian_conditions")
		}
		if sp.BayesianPrior <= 0 || sp.BayesianPrior > 1 {
			return yamlerr.AtKey(errors.New("bayesian needs a prior in (0, 1]"), "bayesian_prior")
		}
		if sp.BayesianThreshold <= 0 || sp.BayesianThreshold > 1 {
			return yamlerr.AtKey(errors.New("bayesian needs a threshold in (0, 1]"), "bayesian_threshold")
		}
		if sp.Capacity != -1 {
			return yamlerr.AtKey(errors.New("bayesian must have capacity -1"), "capacity")
		}
		if sc.leakspeed <= 0 {
			return yamlerr.AtKey(errors.New("bayesian needs a positive leakspeed"), "leakspeed")
		}
	default:
		return yamlerr.AtKey(fmt.Errorf("unknown type %q", sp.Type), "type")
	}
	return nil
}

// sizeBuckets sets how many events sc's buckets hold and how long they
// live.
func sizeBuckets(sp Spec, sc *scenario, duration time.Duration) {
	if sp.CacheSize > 0 && (sp.CacheSize <= sp.Capacity || sp.Capacity == -1) {
		sc.qsize = sp.CacheSize
	}
	// A trigger's bucket holds the one event that fires it.
	if sc.kind == kindTrigger {
		sc.qsize = 0
	}
	// Bucket lifetimes as CrowdSec computes them: a leaky bucket dies
	// (capacity+1) leaks after its last pour, a conditional or bayesian one
	// a leak after, a counter fires duration after its first pour.
	switch sc.kind {
	case kindLeaky:
		sc.lifetime = time.Duration(sp.Capacity+1) * sc.leakspeed
		sc.room = time.Duration(max(sp.Capacity, 0)) * sc.leakspeed
		if sp.Capacity > 0 && sc.room/time.Duration(sp.Capacity) != sc.leakspeed {
			sc.room = math.MaxInt64 // an absurd capacity saturates
		}
	case kindConditional, kindBayesian:
		sc.lifetime = sc.leakspeed
	case kindCounter:
		sc.lifetime = duration
	}
}

// compileExprs compiles sc's expressions: those over one event through
// exprenv's native path, the rest, which also see the bucket, with expr.
func compileExprs(sp Spec, sc *scenario, env *exprenv.Env) error {
	if strings.TrimSpace(sp.Filter) == "" {
		return yamlerr.AtKey(errors.New("scenario without filter"), "filter")
	}
	evtVars := map[string]any{"evt": &detect.Event{}}
	condVars := map[string]any{"evt": &detect.Event{}, "queue": &Queue{}, "leaky": &Leaky{}}
	progs := []struct {
		src  string
		vars map[string]any
		dst  **vm.Program
		what string
		key  []any
	}{
		{sp.Condition, condVars, &sc.condition, "condition", []any{"condition"}},
		{sp.Scope.Expression, evtVars, &sc.scopeExpr, "scope expression", []any{"scope", "expression"}},
		{sp.OverflowFilter, map[string]any{"queue": &Queue{}, "signal": &model.Alert{}, "leaky": &Leaky{}}, &sc.overflowFilter, "overflow_filter", []any{"overflow_filter"}},
	}
	evtProgs := []struct {
		src  string
		dst  **exprenv.Program
		what string
	}{
		{sp.Filter, &sc.filter, "filter"},
		{sp.GroupBy, &sc.groupby, "groupby"},
		{sp.Distinct, &sc.distinct, "distinct"},
		{sp.CancelOn, &sc.cancelOn, "cancel_on"},
	}
	for _, p := range evtProgs {
		if strings.TrimSpace(p.src) == "" {
			continue
		}
		prog, err := env.CompileEvt(p.src, evtVars)
		if err != nil {
			return yamlerr.AtKey(fmt.Errorf("%s: %w", p.what, err), p.what)
		}
		*p.dst = prog
	}
	for _, p := range progs {
		if strings.TrimSpace(p.src) == "" {
			continue
		}
		prog, err := env.Compile(p.src, p.vars)
		if err != nil {
			return yamlerr.AtKey(fmt.Errorf("%s: %w", p.what, err), p.key...)
		}
		*p.dst = prog
	}
	for i, bc := range sp.BayesianConditions {
		prog, err := env.Compile(bc.Condition, condVars)
		if err != nil {
			return yamlerr.AtKey(fmt.Errorf("bayesian condition %d: %w", i, err), "bayesian_conditions", i, "condition")
		}
		sc.bayes = append(sc.bayes, bayesCond{prog: prog, evil: bc.ProbGivenEvil, benign: bc.ProbGivenBenign, guillotine: bc.Guillotine})
	}
	return nil
}

// resolveScope sets sc's decision scope: the built-in ones by their
// canonical name, any other only with an expression that yields its value.
func resolveScope(sp Spec, sc *scenario) error {
	switch sp.Scope.Type {
	case "", "Ip", "ip":
		sc.scope = "Ip"
	case "Range", "range":
		sc.scope = "Range"
	default:
		sc.scope = sp.Scope.Type
		if sc.scopeExpr == nil {
			return yamlerr.AtKey(fmt.Errorf("scope %s needs an expression", sp.Scope.Type), "scope", "type")
		}
	}
	return nil
}

// flattenLabels turns hub labels into strings: lists are joined with ",",
// the rest printed. remediation counts only as the boolean true, as in
// CrowdSec.
func flattenLabels(in map[string]any) (map[string]string, bool) {
	out := make(map[string]string, len(in))
	remediate := false
	for k, v := range in {
		if k == "remediation" {
			if b, ok := v.(bool); ok && b {
				remediate = true
			}
		}
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case nil:
			out[k] = ""
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, remediate
}
