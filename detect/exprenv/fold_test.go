package exprenv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"

	"github.com/moatsec/moat/detect"
)

// unfolded compiles src as expr alone would, with the same helpers: the
// reference a folded program must agree with.
func unfolded(t testing.TB, e *Env, src string, vars map[string]any) (any, error) {
	t.Helper()
	opts := append([]expr.Option{expr.Env(vars)}, e.opts...)
	p, err := expr.Compile(src, opts...)
	if err != nil {
		t.Fatalf("%s: unfolded compile: %v", src, err)
	}
	return e.Run(p, vars)
}

func foldVars() map[string]any {
	evt := detect.NewEvent(detect.Line{Raw: "x"})
	evt.Meta["http_path"] = "/TMUI/LOGIN.JSP/..;/TMUI/LOCALLB/WORKSPACE/FILEREAD.JSP?FILENAME=/etc/passwd"
	evt.Meta["source_ip"] = "192.0.2.7"
	evt.Meta["pat"] = "^/TMUI/"
	return map[string]any{"evt": evt}
}

// Folding calls of pure helpers over constants changes no result.
func TestFoldAgreesWithUnfolded(t *testing.T) {
	e := New("testdata/data")
	vars := foldVars()
	for _, src := range []string{
		`Upper(evt.Meta.http_path) matches Upper('/tmui/login.jsp/..;/tmui/[^.]+.jsp\\?(fileName|command)=')`,
		`Lower(evt.Meta.http_path) matches Lower(Sprintf('^/%s/', TrimSpace('  TMUI ')))`,
		`evt.Meta.http_path matches ('^/TM' + 'UI/')`,
		`Upper(evt.Meta.http_path) matches Upper('\\d')`, // Upper turns \d into \D, folded or not
		`IpInRange(evt.Meta.source_ip, IpToRange('192.0.2.1', '/24'))`,
		`IsIPV4('192.0.2.1') && !IsIPV6('192.0.2.1') && Match('a*', 'abc')`,
		`Atof('2.5') * 2`,
		`JsonExtract('{"a":{"b":"c"}}', 'a.b') + QueryUnescape('%2F') + PathEscape('a b')`,
		`TrimPrefix(evt.Meta.http_path, Upper('/tmui')) startsWith '/LOGIN'`,
		`Sprintf('%d-%s', 3, 'x')`,
		`Atof('not a number')`,
	} {
		p, err := e.Compile(src, vars)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, gerr := e.Run(p, vars)
		want, werr := unfolded(t, e, src, vars)
		if (gerr != nil) != (werr != nil) || got != want {
			t.Errorf("%s: folded %v (%v), unfolded %v (%v)", src, got, gerr, want, werr)
		}
		if c := constCall(p.Node()); c != "" {
			t.Errorf("%s: %s left to run per event", src, c)
		}
	}
}

type constCallFinder struct{ found string }

func (v *constCallFinder) Visit(n *ast.Node) {
	c, ok := (*n).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := c.Callee.(*ast.IdentifierNode)
	if !ok || !pureHelpers[id.Value] {
		return
	}
	for _, a := range c.Arguments {
		if _, ok := constValue(a); !ok {
			return
		}
	}
	v.found = c.String()
}

// constCall names a call of a pure helper over constants left in a
// compiled tree ("" if none).
func constCall(n ast.Node) string {
	var v constCallFinder
	ast.Walk(&n, &v)
	return v.found
}

// A pattern made of pure helpers over constants is compiled at load: a
// run allocates no more than the same test with the pattern written out.
func TestConstantPatternCompiledOnce(t *testing.T) {
	e := New("")
	vars := foldVars()
	const pat = `'/tmui/login.jsp/..;/tmui/[^.]+.jsp\\?(fileName|command|directoryPath|tabId)='`
	allocs := func(src string) float64 {
		p, err := e.Compile(src, vars)
		if err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(50, func() {
			if _, err := e.Run(p, vars); err != nil {
				t.Fatal(err)
			}
		})
	}
	written := allocs(`Upper(evt.Meta.http_path) matches ` + strings.ToUpper(pat))
	folded := allocs(`Upper(evt.Meta.http_path) matches Upper(` + pat + `)`)
	if folded > written {
		t.Errorf("Upper(x) matches Upper('...'): %.0f allocations per run, %.0f with the pattern written out: the pattern is compiled per run", folded, written)
	}
}

// A pattern computed per event is compiled once per distinct pattern,
// and listed as per-event work.
func TestDynamicPatternCached(t *testing.T) {
	e := New("")
	vars := foldVars()
	src := `evt.Meta.http_path matches evt.Meta.pat`
	p, err := e.Compile(src, vars)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		got, err := e.Run(p, vars)
		if err != nil || got != true {
			t.Fatalf("%s = %v, %v", src, got, err)
		}
	}
	if _, compiled := e.res.size(); compiled != 1 {
		t.Errorf("100 runs over one pattern compiled it %d times, want once", compiled)
	}
	dyn := e.Dynamic()
	if len(dyn) != 1 || dyn[0].Expr != src {
		t.Errorf("Dynamic() = %v, want %s listed once", dyn, src)
	}
	// Constant patterns are not per-event work.
	if _, err := e.Compile(`Upper(evt.Meta.http_path) matches Upper('^/tmui')`, vars); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Dynamic()); n != 1 {
		t.Errorf("a folded pattern was reported as per-event work: %v", e.Dynamic())
	}
	// The operator's own answers: nil is false, a bad pattern an error.
	evt := vars["evt"].(*detect.Event)
	evt.Meta["pat"] = "(unclosed"
	if _, err := e.Run(p, vars); err == nil {
		t.Error("a bad pattern matched without an error")
	}
	if _, err := e.Compile(`evt.Meta.http_path matches nil`, vars); err == nil {
		t.Error("matches nil compiled; expr rejects it")
	}
	// A pattern of unknown type (a helper's result) is cached too.
	np, err := e.Compile(`evt.Meta.http_path matches Get(Split(evt.Meta.pat, ','), 0)`, vars)
	if err != nil {
		t.Fatal(err)
	}
	evt.Meta["pat"] = "^/TMUI/,x"
	if got, err := e.Run(np, vars); err != nil || got != true {
		t.Errorf("matches over a helper's result = %v, %v; want true", got, err)
	}
	if n := len(e.Dynamic()); n != 2 {
		t.Errorf("Dynamic() = %v, want 2 expressions", e.Dynamic())
	}
}

// However many distinct patterns events bring, the cache holds at most
// reCacheMax, and none longer than rePatternMax.
func TestRegexpCacheBounded(t *testing.T) {
	e := New("")
	vars := map[string]any{"s": "", "p": ""}
	progs := []string{`s matches p`, `RegexpMatch(p, s)`}
	for _, src := range progs {
		p, err := e.Compile(src, vars)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 * reCacheMax {
			vars["p"] = fmt.Sprintf("^a%d$", i)
			vars["s"] = fmt.Sprintf("a%d", i-i%2)
			got, err := e.Run(p, vars)
			if err != nil || got != (i%2 == 0) {
				t.Fatalf("%s with p=%v s=%v: %v, %v", src, vars["p"], vars["s"], got, err)
			}
			if held, _ := e.res.size(); held > reCacheMax {
				t.Fatalf("%s: cache holds %d patterns after %d, cap %d", src, held, i+1, reCacheMax)
			}
		}
	}
	held, _ := e.res.size()
	vars["p"] = strings.Repeat("a", rePatternMax+1)
	p, _ := e.Compile(progs[0], vars)
	if _, err := e.Run(p, vars); err != nil {
		t.Fatal(err)
	}
	if h, _ := e.res.size(); h > held {
		t.Errorf("a %d-byte pattern was cached", rePatternMax+1)
	}
}

// A pattern in use survives a flood of others.
func TestRegexpCacheKeepsHotPattern(t *testing.T) {
	c := newReCache(64)
	if _, err := c.get("hot"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := c.get(fmt.Sprint("cold", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.get("hot"); err != nil {
			t.Fatal(err)
		}
	}
	if _, compiled := c.size(); compiled != 1001 {
		t.Errorf("compiled %d patterns for 1000 cold and one hot, want 1001", compiled)
	}
}

// A data file line that is not a regexp leaves the loop to the VM, which
// fails as it always did.
func TestFilePatternsBadLine(t *testing.T) {
	e := New("testdata/data")
	if err := e.LoadData(DataSpec{DestFile: "bad.regex.txt", Type: "string"}); err != nil {
		t.Fatal(err)
	}
	vars := foldVars()
	p, err := e.CompileEvt(`any(File('bad.regex.txt'), {evt.Meta.http_path matches #})`, map[string]any{"evt": &detect.Event{}})
	if err != nil {
		t.Fatal(err)
	}
	var m Memo
	if _, decided := p.Bool(&m, vars["evt"].(*detect.Event)); decided {
		t.Error("decided natively over a data file with a bad regexp")
	}
	if _, err := e.Run(p.VM, vars); err == nil {
		t.Error("the VM ran a bad data-file regexp without an error")
	}
}

// foldHelpers are the pure helpers the fuzz target calls, by arity.
var foldHelpers = []struct {
	name  string
	arity int
}{
	{"Upper", 1}, {"Lower", 1}, {"TrimSpace", 1}, {"QueryUnescape", 1}, {"PathUnescape", 1},
	{"PathEscape", 1}, {"QueryEscape", 1}, {"IsIP", 1}, {"IsIPV4", 1}, {"IsIPV6", 1}, {"Atof", 1},
	{"ToString", 1}, {"ParseUnix", 1},
	{"TrimPrefix", 2}, {"TrimSuffix", 2}, {"Trim", 2}, {"TrimLeft", 2}, {"TrimRight", 2},
	{"IpInRange", 2}, {"IpToRange", 2}, {"Match", 2}, {"JsonExtract", 2}, {"JsonExtractUnescape", 2},
	{"XMLGetNodeValue", 2}, {"Sprintf", 2},
}

// A pure helper folded over constants answers as the same call over
// variables holding those values at run time.
func FuzzFoldPureHelpers(f *testing.F) {
	f.Add(uint8(0), "/tmui/Login.jsp", "")
	f.Add(uint8(14), "/tmui/x", "/tmui")
	f.Add(uint8(19), "192.0.2.7", "192.0.2.0/24")
	f.Add(uint8(23), `{"a":{"b":[1,"x"]}}`, "a.b[1]")
	f.Add(uint8(24), "%s-%d%%", "x")
	f.Add(uint8(3), "a%2Fb%zz", "")
	f.Add(uint8(10), "1.5e300", "")
	f.Fuzz(func(t *testing.T, which uint8, a, b string) {
		h := foldHelpers[int(which)%len(foldHelpers)]
		if strings.ContainsRune(a, '`') || strings.ContainsRune(b, '`') {
			t.Skip("raw string literals cannot hold a backquote")
		}
		lits, names := "`"+a+"`", "a"
		if h.arity == 2 {
			lits, names = lits+", `"+b+"`", "a, b"
		}
		e := New("")
		vars := map[string]any{"a": a, "b": b}
		folded, err := e.Compile(h.name+"("+lits+")", vars)
		if err != nil {
			t.Skipf("not an expression: %v", err)
		}
		got, gerr := e.Run(folded, vars)
		want, werr := unfolded(t, e, h.name+"("+names+")", vars)
		if (gerr != nil) != (werr != nil) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s(%q, %q): folded %#v (%v), at run time %#v (%v)", h.name, a, b, got, gerr, want, werr)
		}
		if c := constCall(folded.Node()); gerr == nil && c != "" {
			t.Fatalf("%s left to run per event", c)
		}
	})
}
