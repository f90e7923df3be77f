package scenario

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePrefilter(t *testing.T) {
	cases := []struct {
		filter string
		want   prefilter
	}{
		{"evt.Meta.log_type == 'ssh_failed-auth'", prefilter{"log_type", []string{"ssh_failed-auth"}}},
		{`evt.Meta.service == "http" && evt.Meta.x == 'y'`, prefilter{"service", []string{"http"}}},
		{"evt.Meta.log_type in ['a', \"b\"] and\nevt.Meta.x == '1'", prefilter{"log_type", []string{"a", "b"}}},
		{"(evt.Meta.service == 'sysmon' && evt.Parsed.EventID == '1') && (x || y)", prefilter{"service", []string{"sysmon"}}},
		{"evt.Meta.log_type == 'a' || evt.Meta.log_type == 'b'", prefilter{}},
		{"evt.Meta.log_type == 'a' && b or c", prefilter{}},
		{"evt.Meta.log_type == 'a' && b ? c : d", prefilter{}},
		{"(evt.Meta.log_type == 'a') || b", prefilter{}},
		{"(evt.Meta.log_type == 'a' || b) && c", prefilter{}},
		{"evt.Meta.log_type == 'a' == false", prefilter{}},
		{"Upper(evt.Meta.http_path) contains 'X'", prefilter{}},
		{"evt.Meta.log_type == 'a' && evt.Meta.path contains 'or'", prefilter{"log_type", []string{"a"}}},
	}
	for _, c := range cases {
		got := parsePrefilter(c.filter)
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(prefilter{})); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", c.filter, diff)
		}
	}
}
