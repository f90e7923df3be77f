package grok

import "strings"

// http-logs splits every request with two groks whose regexps only find
// the last '?', the last '/' and the extension after it. Without a
// newline in the input (which '.' would not cross) these are string
// searches; FuzzHTTPFastPaths checks that they agree with the regexps.
const (
	httpArgsPattern = `^%{GREEDYDATA:request}\?%{GREEDYDATA:http_args}$`
	httpFilePattern = `%{DIR:file_dir}(%{FILE:file_frag}%{EXT:file_ext})?`
)

// httpDefs are http-logs' pattern_syntax, which the fast paths assume.
var httpDefs = map[string]string{
	"DIR":  `^.*/`,
	"FILE": `[^/].*?`,
	"EXT":  `\.[^.]*$|$`,
}

func (g *Library) httpFast(src string) func(string, map[string]string) (bool, bool) {
	var f func(string, map[string]string) (bool, bool)
	switch src {
	case httpArgsPattern:
		f = fastHTTPArgs
	case httpFilePattern:
		f = fastHTTPFile
	default:
		return nil
	}
	if !g.sameExpansion(withDefs(httpDefs), src) {
		return nil
	}
	return f
}

// fastHTTPArgs: GREEDYDATA runs to the last '?'.
func fastHTTPArgs(s string, parsed map[string]string) (matched, ok bool) {
	if strings.IndexByte(s, '\n') >= 0 {
		return false, false
	}
	q := strings.LastIndexByte(s, '?')
	if q < 0 {
		return false, true
	}
	parsed["request"] = s[:q]
	parsed["http_args"] = s[q+1:]
	return true, true
}

// fastHTTPFile: DIR runs to the last '/'; the lazy FILE stops at the last
// '.' after it (EXT is a dot and no other to the end) or at the end.
func fastHTTPFile(s string, parsed map[string]string) (matched, ok bool) {
	if strings.IndexByte(s, '\n') >= 0 {
		return false, false
	}
	slash := strings.LastIndexByte(s, '/')
	if slash < 0 {
		return false, true // DIR is anchored: no match anywhere
	}
	d := slash + 1
	frag, ext := "", ""
	if d < len(s) {
		p := len(s)
		if dot := strings.LastIndexByte(s, '.'); dot > d {
			p = dot
		}
		frag, ext = s[d:p], s[p:]
	}
	parsed["file_dir"] = s[:d]
	parsed["file_frag"] = frag
	parsed["file_ext"] = ext
	return true, true
}
