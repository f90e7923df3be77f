package yamlerr

import (
	"errors"

	"go.yaml.in/yaml/v3"
)

// KeyError is an error about the value at a path of keys in a YAML
// document: mapping keys (string) and sequence indexes (int). Loaders that
// validate a decoded struct tag their errors with it, and the caller,
// which holds the document's nodes, turns the path into a line (LineFor).
// The message is Err's alone.
type KeyError struct {
	Path []any
	Err  error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// AtKey tags err with path. When err already carries a path (a nested
// spec's error, wrapped on its way up), path is put before it, so the
// outermost KeyError holds the whole path. A nil err stays nil.
func AtKey(err error, path ...any) error {
	if err == nil {
		return nil
	}
	var inner *KeyError
	if errors.As(err, &inner) {
		path = append(append([]any(nil), path...), inner.Path...)
	}
	return &KeyError{Path: path, Err: err}
}

// LineFor is the line of the key err names in doc (a document or its
// mapping), else def.
func LineFor(doc *yaml.Node, err error, def int) int {
	var ke *KeyError
	if doc == nil || !errors.As(err, &ke) {
		return def
	}
	if l := LineOf(doc, ke.Path...); l > 0 {
		return l
	}
	return def
}

// LineOf finds the line of the key at path in doc; when the path goes
// further than the document does, the line of the deepest key found.
func LineOf(doc *yaml.Node, path ...any) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next, line = n.Content[i+1], n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
