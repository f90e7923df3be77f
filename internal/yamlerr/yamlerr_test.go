package yamlerr

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"go.yaml.in/yaml/v3"
)

func decodeStrict(data string) error {
	var v struct {
		Name  string `yaml:"name"`
		Count int    `yaml:"count"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"name: a\ncolour: blue\n", `f.yaml:2: unknown key "colour"`},
		{"name: a\ncount: many\n", "f.yaml:2: cannot unmarshal !!str `many` into int"},
		{"name: a\ncount: x\nbad: 1\n", "f.yaml:2: cannot unmarshal !!str `x` into int"},
		{"name: [a\n", "f.yaml:1: did not find expected ',' or ']'"},
		{"\tname: a\n", "f.yaml: found character that cannot start any token"},
	} {
		err := Wrap("f.yaml", decodeStrict(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Wrap(%q) = %v, want %s", tc.in, err, tc.want)
		}
		var ye *Error
		if !errors.As(err, &ye) {
			t.Errorf("Wrap(%q) is %T, want *Error", tc.in, err)
		}
	}
	other := errors.New("disk on fire")
	if got := Wrap("f.yaml", other); got != other {
		t.Errorf("a non-yaml error was rewritten: %v", got)
	}
	if Wrap("f.yaml", nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
}
