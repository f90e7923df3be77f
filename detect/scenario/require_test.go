package scenario

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect"
)

func TestRequirements(t *testing.T) {
	cases := []struct {
		filter string
		want   string // key=v1|v2 per requirement, space separated
	}{
		{"evt.Meta.log_type == 'ssh_failed-auth'", "log_type=ssh_failed-auth"},
		{`evt.Meta.service == "http" && evt.Meta.x == 'y'`, "service=http x=y"},
		{"evt.Meta.log_type in ['a', \"b\"] and\nevt.Meta.x == '1'", "log_type=a|b x=1"},
		{"(evt.Meta.service == 'sysmon' && evt.Parsed.EventID == '1') && (x || y)", "service=sysmon"},
		{"evt.Meta.service == 'http' and evt.Meta.log_type in ['a'] and Upper(evt.Meta.p) contains 'X' and evt.Meta.s == '404'", "service=http log_type=a s=404"},
		{"evt.Meta.log_type == 'a' || evt.Meta.log_type == 'b'", ""},
		{"evt.Meta.log_type == 'a' && b or c", ""},
		{"evt.Meta.log_type == 'a' && b ? c : d", ""},
		{"(evt.Meta.log_type == 'a') || b", ""},
		{"(evt.Meta.log_type == 'a' || b) && c", ""},
		{"evt.Meta.log_type == 'a' == false", ""},
		{"Upper(evt.Meta.http_path) contains 'X' && evt.Meta.log_type == 'a'", "log_type=a"},
		{"evt.Meta.log_type == 'a' && evt.Meta.path contains 'or'", "log_type=a"},
		{"evt.Meta['log_type'] in ['a', 'b']", "log_type=a|b"},
		{"evt.Meta.log_type != 'a'", ""},
		// Pure conjuncts are stepped over; side effects end the search.
		{"Upper(evt.Meta.p) contains 'X' && Upper(evt.Parsed.verb) == 'POST' && evt.Meta.s == '404'", "s=404"},
		{"evt.SetMeta('a', 'b') && evt.Meta.s == '404'", ""},
		{"evt.Meta.t in ['x'] && any(File('f'), {evt.Meta.p contains # ? evt.SetMeta('c', #) : false}) && evt.Meta.s == '404'", "t=x"},
		{"let r = Lower(evt.Parsed.request); evt.Meta.t in ['x', 'y'] && r contains 'a' && evt.Meta.s in ['404', '403']", "t=x|y s=403|404"},
		{"let r = evt.GetMeta('x'); evt.Meta.t == 'x'", ""},
		{"if (evt.Meta.service == 'http' and evt.Meta.s in ['404']) { evt.SetMeta('a', 'b') } else { false }", "service=http s=404"},
		{"if (evt.Meta.service == 'http') { true } else { evt.Meta.s == '1' }", ""},
		{"evt.Meta.s == '1' ? evt.Meta.t == 'x' : false", "s=1"},
		// The event's type is a requirement too: overflows poured again.
		{"evt.GetType() == 'overflow' && evt.Overflow.Alert.Remediation == true", typeKey + "=overflow"},
		{"evt.Meta.log_type == 'a' && evt.GetType() in ['log']", "log_type=a " + typeKey + "=log"},
		{"evt.GetType('x') == 'overflow'", ""},
	}
	for _, c := range cases {
		var got []string
		for _, r := range requirements(c.filter) {
			got = append(got, r.key+"="+strings.Join(slices.Sorted(maps.Keys(r.values)), "|"))
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%q: requirements %q, want %q", c.filter, g, c.want)
		}
	}
}

// A conjunct with a side effect ends the leading conjuncts, but its gate,
// when the effect runs only where a pure condition holds, is one.
func TestLeadingConjunctsGate(t *testing.T) {
	cases := []struct{ filter, want string }{
		{"evt.Meta.s == '404' && any(File('f'), {evt.Meta.p contains # ? evt.SetMeta('c', #) : false}) && evt.Meta.t == 'x'",
			`evt.Meta.s == "404" | any(File("f"), evt.Meta.p contains #)`},
		// The effect may run where the condition fails: no gate.
		{"evt.Meta.s == '404' && any(File('f'), {evt.Meta.p contains # ? evt.SetMeta('c', #) : true})", `evt.Meta.s == "404"`},
		{"evt.Meta.s == '404' && any(File('f'), {evt.SetMeta('c', #) ? true : false})", `evt.Meta.s == "404"`},
		{"evt.Meta.s == '404' && all(File('f'), {evt.Meta.p contains # ? evt.SetMeta('c', #) : false})", `evt.Meta.s == "404"`},
		{"evt.Meta.s == '404' && any(evt.SetMeta('c', 'd') ? ['a'] : [], {evt.Meta.p contains # ? evt.SetMeta('c', #) : false})", `evt.Meta.s == "404"`},
	}
	for _, c := range cases {
		conj, _ := leadingConjuncts(c.filter)
		var got []string
		for _, n := range conj {
			got = append(got, n.String())
		}
		if g := strings.Join(got, " | "); g != c.want {
			t.Errorf("%q: leading conjuncts %q, want %q", c.filter, g, c.want)
		}
	}
}

// Candidates are the scenarios whose requirements hold, in load order,
// whatever tuple of meta values came first.
func TestCandidates(t *testing.T) {
	s := &Set{}
	m := s.NewMatcher()
	for i, f := range []string{
		"evt.Meta.log_type == 'a' && evt.Meta.status in ['404', '403']",
		"evt.Meta.log_type in ['a', 'b']",
		"Upper(evt.Meta.path) contains 'X'",
		"evt.Meta.status == ''",
	} {
		sc := &scenario{idx: i, reqs: requirements(f)}
		s.scenarios = append(s.scenarios, sc)
		for _, r := range sc.reqs {
			if !slices.Contains(s.reqKeys, r.key) {
				s.reqKeys = append(s.reqKeys, r.key)
			}
		}
	}
	for _, c := range []struct {
		meta map[string]string
		want []int
	}{
		{map[string]string{"log_type": "a", "status": "404"}, []int{0, 1, 2}},
		{map[string]string{"log_type": "a", "status": "200"}, []int{1, 2}},
		{map[string]string{"log_type": "b"}, []int{1, 2, 3}},
		{map[string]string{"log_type": "a", "status": "404"}, []int{0, 1, 2}},
		{map[string]string{}, []int{2, 3}},
	} {
		evt := detect.NewEvent(detect.Line{})
		maps.Copy(evt.Meta, c.meta)
		var got []int
		for _, sc := range m.candidates(evt) {
			got = append(got, sc.idx)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: candidates %v, want %v", c.meta, got, c.want)
		}
	}
}

func TestMayTakeOverflow(t *testing.T) {
	cases := []struct {
		filter string
		want   bool
	}{
		{"evt.Meta.log_type == 'ssh_failed-auth'", false},
		{"evt.Meta.service == 'http' && evt.Meta.log_type in ['a', 'b']", false},
		{"evt.GetType() == 'overflow'", true},
		{"evt.GetType() == 'log' && evt.Meta.x == ''", false},
		{"evt.GetType() == 'overflow' && evt.Overflow.Alert.Remediation == true", true},
		{"evt.Meta.source_ip == '192.0.2.1'", true},
		{"evt.Meta.SourceRange in ['192.0.2.0/24']", true},
		{"evt.Meta.log_type in ['', 'a']", true},
		{"evt.Overflow.Alert != nil", true},
		{"Upper(evt.Meta.p) contains 'X'", true},
	}
	for _, c := range cases {
		sc := &scenario{reqs: requirements(c.filter)}
		if got := sc.mayTakeOverflow(); got != c.want {
			t.Errorf("%q: mayTakeOverflow %v, want %v", c.filter, got, c.want)
		}
	}
}
