// Package exprenv is the expr-lang environment hub expressions run in: the
// CrowdSec-compatible helper functions, the data files they read and the
// stash parsers fill. Nothing is global; every cache lives in an Env.
package exprenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm"
)

// DataSpec is one entry of a hub file's `data:` list.
type DataSpec struct {
	SourceURL string `yaml:"source_url"`
	DestFile  string `yaml:"dest_file"`
	// Type is "string" (one value per line), "regexp" (one regexp per line)
	// or "map" (JSON lines of {tag, pattern, type}).
	Type string `yaml:"type"`
	// Strategy, Size and TTL tune CrowdSec's regexp cache; moat compiles
	// every regexp once, so they are accepted and ignored.
	Strategy string `yaml:"strategy"`
	Size     *int   `yaml:"size"`
	TTL      string `yaml:"ttl"`
}

// lookupEntry is one line of a "map" data file.
type lookupEntry struct {
	Tag     string `json:"tag"`
	Pattern string `json:"pattern"`
	Type    string `json:"type"`
	re      *regexp.Regexp
}

// Env holds the helper functions, the loaded data files and the stash.
// Programs compiled by an Env may run concurrently; the stash and the
// regexp caches are guarded.
type Env struct {
	dataDir string
	opts    []expr.Option

	mu       sync.RWMutex
	strs     map[string][]string
	strSet   map[string]map[string]struct{}
	regexps  map[string][]*regexp.Regexp
	lookups  map[string][]lookupEntry
	dataPath map[string]string // base name -> path under dataDir, built lazily
	stashes  map[string]*stash
	// res holds patterns computed per event (RegexpMatch, matches over a
	// computed pattern), bounded.
	res *reCache
	// reHits caches RegexpInFile verdicts per file and input: the same
	// user agents and paths come back again and again, and a file holds
	// hundreds of regexps (CrowdSec's LRU strategy serves the same end).
	reHits map[string]map[string]bool
	// lookupHits caches LookupFile verdicts per file and input.
	lookupHits map[string]map[string]string
	// rePre spares the regexps whose required literal is absent.
	rePre map[string]*regexpPrefilter
	// folded holds Upper and Lower of every data-file line: scenarios
	// fold each entry of a list for each event (any(File(f), {... Upper(#)})).
	uppers, lowers map[string]string
	// foldCache remembers folds of other strings (inline lists, the
	// event's field folded once per list entry); bounded, reset when full.
	foldMu            sync.Mutex
	upCache, lowCache map[string]string

	// matchers are the data-file list matchers of compiled programs;
	// slots number the memoizable folds (see Memo).
	matchers   map[string]*lazyMatcher
	slots      map[string]int
	slotShared []*atomic.Bool

	vms sync.Pool

	fnOnce  sync.Once
	fns     map[string]*builtin.Function
	dynMu   sync.Mutex
	dyn     []Dynamic
	dynSeen map[Dynamic]bool
}

// New returns an Env reading data files under dataDir (searched
// recursively by base name; moat never downloads).
func New(dataDir string) *Env {
	e := &Env{
		dataDir: dataDir,
		strs:    map[string][]string{},
		strSet:  map[string]map[string]struct{}{},
		regexps: map[string][]*regexp.Regexp{},
		lookups: map[string][]lookupEntry{},
		stashes: map[string]*stash{},
		res:     newReCache(reCacheMax),
		reHits:  map[string]map[string]bool{},
		uppers:  map[string]string{},
		lowers:  map[string]string{},
	}
	e.vms.New = func() any { return &vm.VM{} }
	e.opts = e.functions()
	return e
}

// DataDir is the directory data files are read from.
func (e *Env) DataDir() string { return e.dataDir }

func (e *Env) findData(name string) (string, error) {
	base := filepath.Base(name)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dataPath == nil {
		e.dataPath = map[string]string{}
		if e.dataDir != "" {
			err := filepath.WalkDir(e.dataDir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() {
					if _, ok := e.dataPath[d.Name()]; !ok {
						e.dataPath[d.Name()] = p
					}
				}
				return nil
			})
			if err != nil {
				e.dataPath = nil
				return "", fmt.Errorf("scan data dir %s: %w", e.dataDir, err)
			}
		}
	}
	p, ok := e.dataPath[base]
	if !ok {
		return "", fmt.Errorf("data file %s: %w", base, fs.ErrNotExist)
	}
	return p, nil
}

// Strings returns the lines of the string data file name (File's
// argument), and whether it is loaded.
func (e *Env) Strings(name string) ([]string, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	l, ok := e.strs[name]
	return l, ok
}

// LoadData reads the data file a `data:` entry names, once per name and type.
func (e *Env) LoadData(d DataSpec) error {
	if d.DestFile == "" {
		return fmt.Errorf("data entry without dest_file")
	}
	name := filepath.Base(d.DestFile)
	e.mu.RLock()
	_, s := e.strs[name]
	_, r := e.regexps[name]
	_, l := e.lookups[name]
	e.mu.RUnlock()
	switch d.Type {
	case "string", "":
		if s {
			return nil
		}
	case "regexp":
		if r {
			return nil
		}
	case "map":
		if l {
			return nil
		}
	default:
		return fmt.Errorf("data file %s: unknown type %q", name, d.Type)
	}
	path, err := e.findData(name)
	if err != nil && d.SourceURL != "" {
		// Some hub files rename on download (dest_file differs from the
		// published name); a local copy may keep either name.
		if p, err2 := e.findData(filepath.Base(d.SourceURL)); err2 == nil {
			path, err = p, nil
		}
	}
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load data file: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		t := sc.Text()
		if t == "" {
			continue
		}
		lines = append(lines, t)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read data file %s: %w", path, err)
	}
	switch d.Type {
	case "string", "":
		set := make(map[string]struct{}, len(lines))
		for _, l := range lines {
			set[l] = struct{}{}
		}
		e.mu.Lock()
		e.strs[name] = lines
		e.strSet[name] = set
		for _, l := range lines {
			e.uppers[l] = strings.ToUpper(l)
			e.lowers[l] = strings.ToLower(l)
		}
		e.mu.Unlock()
	case "regexp":
		res := make([]*regexp.Regexp, 0, len(lines))
		for i, l := range lines {
			if strings.HasPrefix(l, "#") {
				continue
			}
			re, err := regexp.Compile(l)
			if err != nil {
				return fmt.Errorf("data file %s:%d: %w", path, i+1, err)
			}
			res = append(res, re)
		}
		pre := newRegexpPrefilter(res)
		e.mu.Lock()
		e.regexps[name] = res
		if e.rePre == nil {
			e.rePre = map[string]*regexpPrefilter{}
		}
		e.rePre[name] = pre
		e.mu.Unlock()
	case "map":
		var ents []lookupEntry
		for i, l := range lines {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			var le lookupEntry
			if err := json.Unmarshal([]byte(l), &le); err != nil {
				return fmt.Errorf("data file %s:%d: %w", path, i+1, err)
			}
			if le.Type == "regex" || le.Type == "regexp" {
				re, err := regexp.Compile(le.Pattern)
				if err != nil {
					return fmt.Errorf("data file %s:%d: %w", path, i+1, err)
				}
				le.re = re
			}
			ents = append(ents, le)
		}
		e.mu.Lock()
		e.lookups[name] = ents
		e.mu.Unlock()
	}
	return nil
}

// Compile compiles src once against the helper functions and the variable
// types in vars (e.g. {"evt": &detect.Event{}}). Calls of pure helpers
// over constants are computed here, and a pattern computed per event is
// compiled through a bounded cache: no run compiles what a load could.
func (e *Env) Compile(src string, vars map[string]any) (*vm.Program, error) {
	f := e.newFolder(src, true)
	opts := make([]expr.Option, 0, len(e.opts)+3)
	opts = append(opts, expr.Env(vars))
	opts = append(opts, e.opts...)
	opts = append(opts, e.dynMatchHelper(), expr.Patch(f))
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, fmt.Errorf("compile %q: %w", src, err)
	}
	return p, nil
}

// Run runs a compiled program over vars.
func (e *Env) Run(p *vm.Program, vars map[string]any) (any, error) {
	m := e.vms.Get().(*vm.VM)
	out, err := m.Run(p, vars)
	e.vms.Put(m)
	return out, err
}

// RunBool runs p and requires a boolean result; nil counts as false.
func (e *Env) RunBool(p *vm.Program, vars map[string]any) (bool, error) {
	out, err := e.Run(p, vars)
	if err != nil {
		return false, err
	}
	switch v := out.(type) {
	case bool:
		return v, nil
	case nil:
		return false, nil
	default:
		return false, fmt.Errorf("expression returned %T, want bool", out)
	}
}

// RunString runs p and renders the result as CrowdSec does for statics:
// strings as they are, nil as "", anything else with %v.
func (e *Env) RunString(p *vm.Program, vars map[string]any) (string, error) {
	out, err := e.Run(p, vars)
	if err != nil {
		return "", err
	}
	return ToString(out), nil
}

// ToString renders an expression result as a static value.
func ToString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

// reHitsMax bounds each file's verdict cache; a full cache starts over.
const reHitsMax = 16384

func (e *Env) regexpInFile(s, file string) bool {
	e.mu.RLock()
	v, ok := e.reHits[file][s]
	res := e.regexps[file]
	pre := e.rePre[file]
	e.mu.RUnlock()
	if ok {
		return v
	}
	if pre != nil {
		res = pre.candidates(s, res)
	}
	v = false
	for _, re := range res {
		if re.MatchString(s) {
			v = true
			break
		}
	}
	e.mu.Lock()
	m := e.reHits[file]
	if m == nil || len(m) >= reHitsMax {
		m = make(map[string]bool)
		e.reHits[file] = m
	}
	m[s] = v
	e.mu.Unlock()
	return v
}

func (e *Env) upper(s string) string {
	e.mu.RLock()
	u, ok := e.uppers[s]
	e.mu.RUnlock()
	if ok {
		return u
	}
	return e.fold(&e.upCache, s, strings.ToUpper)
}

func (e *Env) lower(s string) string {
	e.mu.RLock()
	l, ok := e.lowers[s]
	e.mu.RUnlock()
	if ok {
		return l
	}
	return e.fold(&e.lowCache, s, strings.ToLower)
}

// foldCacheMax bounds each fold cache.
const foldCacheMax = 8192

func (e *Env) fold(cache *map[string]string, s string, f func(string) string) string {
	e.foldMu.Lock()
	defer e.foldMu.Unlock()
	return cachedFold(cache, s, f)
}
