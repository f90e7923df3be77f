package hubstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Inspection is what Inspect knows about one item.
type Inspection struct {
	Ref       string  `json:"item"`
	Installed *Record `json:"installed,omitempty"`
	// State is the installed file against its record (StateOK...), "" if
	// not installed.
	State string `json:"state,omitempty"`
	// CurrentSHA256 is the installed file's digest now, when tainted.
	CurrentSHA256 string `json:"current_sha256,omitempty"`
	// Available is the source's item, nil without a source or if it lacks it.
	Available *Item `json:"available,omitempty"`
	// Diff is the installed file against the source's, in unified form
	// ("" when equal or either side is absent).
	Diff string `json:"diff,omitempty"`
}

// Inspect describes ref as installed and, with a source, as offered; with
// diff it also compares the two files line by line.
func (s *Store) Inspect(src *Source, ref string, diff bool) (Inspection, error) {
	var in Inspection
	r, rerr := s.Lookup(ref)
	if rerr == nil {
		in.Installed, in.Ref = &r, r.Ref()
		st, err := s.FileState(r)
		if err != nil {
			return in, err
		}
		in.State = st
		if st == StateTainted {
			b, err := os.ReadFile(filepath.Join(s.Dir, r.Path))
			if err != nil {
				return in, err
			}
			in.CurrentSHA256 = digest(b)
		}
	}
	if src != nil {
		lookupRef := ref
		if in.Installed != nil {
			lookupRef = in.Installed.Ref()
		}
		if it, err := src.Lookup(lookupRef); err == nil {
			in.Available, in.Ref = &it, it.Ref()
		}
	}
	if in.Installed == nil && in.Available == nil {
		return in, fmt.Errorf("inspect: %w", rerr)
	}
	if diff && in.Installed != nil && in.Available != nil && in.State != StateMissing {
		mine, err := os.ReadFile(filepath.Join(s.Dir, in.Installed.Path))
		if err != nil {
			return in, err
		}
		theirs, err := os.ReadFile(filepath.Join(src.Root, in.Available.Path))
		if err != nil {
			return in, err
		}
		in.Diff = unified("installed/"+in.Installed.Path, "source/"+in.Available.Path, string(mine), string(theirs))
	}
	return in, nil
}

// maxDiffLines bounds the quadratic line diff; hub files are far smaller.
const maxDiffLines = 4000

// unified returns a unified diff of a and b with three lines of context,
// "" when they are equal.
func unified(nameA, nameB, a, b string) string {
	if a == b {
		return ""
	}
	la, lb := splitLines(a), splitLines(b)
	if len(la) > maxDiffLines || len(lb) > maxDiffLines {
		return fmt.Sprintf("--- %s\n+++ %s\n(files differ; too long to compare line by line)\n", nameA, nameB)
	}
	// lcs[i][j] is the longest common subsequence of la[i:] and lb[j:].
	lcs := make([][]int, len(la)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(lb)+1)
	}
	for i := len(la) - 1; i >= 0; i-- {
		for j := len(lb) - 1; j >= 0; j-- {
			if la[i] == lb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind   byte // ' ', '-', '+'
		text   string
		ai, bi int // line numbers (0-based) before this op
	}
	var ops []op
	i, j := 0, 0
	for i < len(la) || j < len(lb) {
		switch {
		case i < len(la) && j < len(lb) && la[i] == lb[j]:
			ops = append(ops, op{' ', la[i], i, j})
			i++
			j++
		case i < len(la) && (j == len(lb) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', la[i], i, j})
			i++
		default:
			ops = append(ops, op{'+', lb[j], i, j})
			j++
		}
	}
	const ctx = 3
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		// A hunk: from ctx lines before this change to ctx lines after
		// the last change closer than 2*ctx to the previous one.
		start := max(0, k-ctx)
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		na, nb := 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				na++
			}
			if o.kind != '-' {
				nb++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", ops[start].ai+1, na, ops[start].bi+1, nb)
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		k = end
	}
	return out.String()
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
