package rxlit

import (
	"regexp/syntax"
	"slices"
	"testing"
)

func TestRequired(t *testing.T) {
	cases := []struct {
		rx   string
		want []string
	}{
		{`Failed password for (\S+) from`, []string{"Failed password for ", " from"}},
		{`(?:abc)+x{2,}`, []string{"abc", "x"}},
		{`(?:abc)*def`, []string{"def"}},
		{`(?i)abc def`, nil},
		{`abc|def`, nil},
		{`a(bc)?d`, []string{"a", "d"}},
	}
	for _, c := range cases {
		re, err := syntax.Parse(c.rx, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		Required(re, func(lit string) { got = append(got, lit) })
		if !slices.Equal(got, c.want) {
			t.Errorf("Required(%q) = %q, want %q", c.rx, got, c.want)
		}
	}
}

func TestOneOf(t *testing.T) {
	cases := []struct {
		rx   string
		want []string
	}{
		{`Failed password for (\S+) from`, []string{"Failed password for "}},
		{`(?:sqlmap|nikto|masscan)`, []string{"sqlmap", "nikto", "masscan"}},
		{`x(?:\.\.(?:/|%2f)|/etc/(?:passwd|shadow))`, []string{"..", "passwd", "shadow"}},
		{`(?:abc|d)`, nil},
		{`(?i)abc|def`, nil},
		{`^[0-9]+$`, nil},
		{`a(bc)?d`, nil},
		{`(?:/wp-login\.php)+`, []string{"/wp-login.php"}},
	}
	for _, c := range cases {
		re, err := syntax.Parse(c.rx, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if got := OneOf(re, 2); !slices.Equal(got, c.want) {
			t.Errorf("OneOf(%q) = %q, want %q", c.rx, got, c.want)
		}
	}
}
