package exprenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
)

type helper struct {
	name string
	fn   func(params ...any) (any, error)
}

func (e *Env) functions() []expr.Option {
	hs := slices.Concat(e.textHelpers(), e.matchHelpers(), e.dataHelpers(), e.stateHelpers())
	opts := make([]expr.Option, 0, len(hs))
	for _, h := range hs {
		opts = append(opts, expr.Function(h.name, h.fn))
	}
	return opts
}

// textHelpers are the string, number and URL helpers.
func (e *Env) textHelpers() []helper {
	return []helper{
		{"Lower", str1(e.lower)},
		{"Upper", str1(e.upper)},
		{"TrimSpace", str1(strings.TrimSpace)},
		{"TrimPrefix", str2(strings.TrimPrefix)},
		{"TrimSuffix", str2(strings.TrimSuffix)},
		{"Trim", str2(strings.Trim)},
		{"TrimLeft", str2(strings.TrimLeft)},
		{"TrimRight", str2(strings.TrimRight)},
		{"Split", func(p ...any) (any, error) {
			if err := arity("Split", p, 2); err != nil {
				return nil, err
			}
			return strings.Split(ToString(p[0]), ToString(p[1])), nil
		}},
		{"Sprintf", func(p ...any) (any, error) {
			if len(p) == 0 {
				return "", nil
			}
			return fmt.Sprintf(ToString(p[0]), p[1:]...), nil
		}},
		{"ToString", func(p ...any) (any, error) {
			if err := arity("ToString", p, 1); err != nil {
				return nil, err
			}
			return ToString(p[0]), nil
		}},
		{"Atof", func(p ...any) (any, error) {
			if err := arity("Atof", p, 1); err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(ToString(p[0]), 64)
			if err != nil {
				return 0.0, nil
			}
			return f, nil
		}},
		{"QueryUnescape", str1(func(s string) string {
			u, err := url.QueryUnescape(s)
			if err != nil {
				return s
			}
			return u
		})},
		{"PathUnescape", str1(func(s string) string {
			u, err := url.PathUnescape(s)
			if err != nil {
				return s
			}
			return u
		})},
		{"PathEscape", str1(url.PathEscape)},
		{"QueryEscape", str1(url.QueryEscape)},
		{"ParseUri", func(p ...any) (any, error) {
			if err := arity("ParseUri", p, 1); err != nil {
				return nil, err
			}
			out := map[string][]string{}
			u, err := url.Parse(ToString(p[0]))
			if err != nil {
				return out, nil
			}
			for k, v := range u.Query() {
				out[k] = v
			}
			return out, nil
		}},
		{"Hostname", func(p ...any) (any, error) {
			h, err := os.Hostname()
			if err != nil {
				return "", nil
			}
			return h, nil
		}},
	}
}

// matchHelpers test addresses, ranges, data files and regexps.
func (e *Env) matchHelpers() []helper {
	return []helper{
		{"IsIP", strBool(func(s string) bool { _, err := netip.ParseAddr(s); return err == nil })},
		{"IsIPV4", strBool(func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Unmap().Is4() })},
		{"IsIPV6", strBool(func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is6() && !a.Is4In6() })},
		{"IpInRange", func(p ...any) (any, error) {
			if err := arity("IpInRange", p, 2); err != nil {
				return nil, err
			}
			a, err := netip.ParseAddr(ToString(p[0]))
			if err != nil {
				return false, nil
			}
			r, err := netip.ParsePrefix(ToString(p[1]))
			if err != nil {
				return false, nil
			}
			return r.Contains(a.Unmap()) || r.Contains(a), nil
		}},
		{"IpToRange", func(p ...any) (any, error) {
			if err := arity("IpToRange", p, 2); err != nil {
				return nil, err
			}
			return IPToRange(ToString(p[0]), ToString(p[1])), nil
		}},
		{"Match", func(p ...any) (any, error) {
			if err := arity("Match", p, 2); err != nil {
				return nil, err
			}
			return globMatch(ToString(p[0]), ToString(p[1])), nil
		}},
		{"File", func(p ...any) (any, error) {
			if err := arity("File", p, 1); err != nil {
				return nil, err
			}
			if l, ok := e.Strings(ToString(p[0])); ok {
				return l, nil
			}
			return []string{}, nil
		}},
		{"RegexpInFile", func(p ...any) (any, error) {
			if err := arity("RegexpInFile", p, 2); err != nil {
				return nil, err
			}
			return e.regexpInFile(ToString(p[0]), ToString(p[1])), nil
		}},
		{"LookupFile", func(p ...any) (any, error) {
			if err := arity("LookupFile", p, 2); err != nil {
				return nil, err
			}
			return e.lookupFile(ToString(p[0]), ToString(p[1])), nil
		}},
		{"RegexpMatch", func(p ...any) (any, error) {
			if err := arity("RegexpMatch", p, 2); err != nil {
				return nil, err
			}
			re, err := e.regexp(ToString(p[0]))
			if err != nil {
				return false, nil
			}
			return re.MatchString(ToString(p[1])), nil
		}},
	}
}

// dataHelpers read JSON, key=value and XML.
func (e *Env) dataHelpers() []helper {
	return []helper{
		{"JsonExtract", func(p ...any) (any, error) {
			if err := arity("JsonExtract", p, 2); err != nil {
				return nil, err
			}
			return jsonExtractRaw(ToString(p[0]), ToString(p[1])), nil
		}},
		{"JsonExtractUnescape", func(p ...any) (any, error) {
			if len(p) < 2 {
				return nil, fmt.Errorf("JsonExtractUnescape: want at least 2 arguments")
			}
			path := make([]string, 0, len(p)-1)
			for _, x := range p[1:] {
				path = append(path, ToString(x))
			}
			v, ok := jsonPath(ToString(p[0]), strings.Join(path, "."))
			if !ok {
				return "", nil
			}
			return jsonString(v), nil
		}},
		{"JsonExtractSlice", func(p ...any) (any, error) {
			if err := arity("JsonExtractSlice", p, 2); err != nil {
				return nil, err
			}
			v, ok := jsonPath(ToString(p[0]), ToString(p[1]))
			if !ok {
				return nil, nil
			}
			s, ok := v.([]any)
			if !ok {
				return nil, nil
			}
			return s, nil
		}},
		{"JsonExtractObject", func(p ...any) (any, error) {
			if err := arity("JsonExtractObject", p, 2); err != nil {
				return nil, err
			}
			v, ok := jsonPath(ToString(p[0]), ToString(p[1]))
			if !ok {
				return nil, nil
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, nil
			}
			return m, nil
		}},
		{"ToJsonString", func(p ...any) (any, error) {
			if err := arity("ToJsonString", p, 1); err != nil {
				return nil, err
			}
			b, err := json.Marshal(p[0])
			if err != nil {
				return "", nil
			}
			return string(b), nil
		}},
		{"UnmarshalJSON", func(p ...any) (any, error) {
			if err := arity("UnmarshalJSON", p, 3); err != nil {
				return nil, err
			}
			target, ok := p[1].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("UnmarshalJSON: target is %T, want a map", p[1])
			}
			var out any
			if err := json.Unmarshal([]byte(ToString(p[0])), &out); err != nil {
				// CrowdSec returns the error as a value so filters can test
				// `in ["", nil]`.
				return err.Error(), nil
			}
			target[ToString(p[2])] = out
			return nil, nil
		}},
		{"ParseKV", parseKVFunc(false)},
		{"ParseKVLax", parseKVFunc(true)},
		{"XMLGetNodeValue", func(p ...any) (any, error) {
			if err := arity("XMLGetNodeValue", p, 2); err != nil {
				return nil, err
			}
			n := xmlFind(ToString(p[0]), ToString(p[1]))
			if n == nil {
				return "", nil
			}
			return n.text, nil
		}},
		{"XMLGetAttributeValue", func(p ...any) (any, error) {
			if err := arity("XMLGetAttributeValue", p, 3); err != nil {
				return nil, err
			}
			n := xmlFind(ToString(p[0]), ToString(p[1]))
			if n == nil {
				return "", nil
			}
			return n.attr(ToString(p[2])), nil
		}},
	}
}

// stateHelpers reach the stash, bucket figures, maps and time.
func (e *Env) stateHelpers() []helper {
	return []helper{
		{"GetFromStash", func(p ...any) (any, error) {
			if err := arity("GetFromStash", p, 2); err != nil {
				return nil, err
			}
			v, _ := e.GetFromStash(ToString(p[0]), ToString(p[1]))
			return v, nil
		}},
		{"SetInStash", func(p ...any) (any, error) {
			if err := arity("SetInStash", p, 3); err != nil {
				return nil, err
			}
			e.SetInStash(ToString(p[0]), ToString(p[1]), ToString(p[2]), time.Time{})
			return nil, nil
		}},
		{"MedianInterval", func(p ...any) (any, error) {
			if err := arity("MedianInterval", p, 1); err != nil {
				return nil, err
			}
			return medianInterval(p[0]), nil
		}},
		{"Distance", func(p ...any) (any, error) {
			if err := arity("Distance", p, 4); err != nil {
				return nil, err
			}
			var f [4]float64
			for i := range f {
				v, err := strconv.ParseFloat(ToString(p[i]), 64)
				if err != nil {
					return 0.0, nil
				}
				f[i] = v
			}
			return haversineKm(f[0], f[1], f[2], f[3]), nil
		}},
		{"FloatApproxEqual", func(p ...any) (any, error) {
			if err := arity("FloatApproxEqual", p, 2); err != nil {
				return nil, err
			}
			a, ok1 := toFloat(p[0])
			b, ok2 := toFloat(p[1])
			return ok1 && ok2 && math.Abs(a-b) < 1e-6, nil
		}},
		{"KeyExists", func(p ...any) (any, error) {
			if err := arity("KeyExists", p, 2); err != nil {
				return nil, err
			}
			m, ok := p[1].(map[string]any)
			if !ok {
				return false, nil
			}
			_, ok = m[ToString(p[0])]
			return ok, nil
		}},
		{"Get", func(p ...any) (any, error) {
			if err := arity("Get", p, 2); err != nil {
				return nil, err
			}
			s, ok := p[0].([]string)
			i, ok2 := toFloat(p[1])
			if !ok || !ok2 || int(i) < 0 || int(i) >= len(s) {
				return "", nil
			}
			return s[int(i)], nil
		}},
		{"Distinct", func(p ...any) (any, error) {
			if err := arity("Distinct", p, 1); err != nil {
				return nil, err
			}
			return distinct(p[0]), nil
		}},
		{"ParseUnix", str1(func(s string) string {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return ""
			}
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format(time.RFC3339)
		})},
	}
}

func arity(name string, p []any, n int) error {
	if len(p) != n {
		return fmt.Errorf("%s: got %d arguments, want %d", name, len(p), n)
	}
	return nil
}

func str1(f func(string) string) func(p ...any) (any, error) {
	return func(p ...any) (any, error) {
		if len(p) != 1 {
			return nil, fmt.Errorf("got %d arguments, want 1", len(p))
		}
		return f(ToString(p[0])), nil
	}
}

func str2(f func(string, string) string) func(p ...any) (any, error) {
	return func(p ...any) (any, error) {
		if len(p) != 2 {
			return nil, fmt.Errorf("got %d arguments, want 2", len(p))
		}
		return f(ToString(p[0]), ToString(p[1])), nil
	}
}

func strBool(f func(string) bool) func(p ...any) (any, error) {
	return func(p ...any) (any, error) {
		if len(p) != 1 {
			return nil, fmt.Errorf("got %d arguments, want 1", len(p))
		}
		return f(ToString(p[0])), nil
	}
}

func (e *Env) regexp(src string) (*regexp.Regexp, error) { return e.res.get(src) }

func (le *lookupEntry) match(s string) bool {
	switch le.Type {
	case "equals", "":
		return s == le.Pattern
	case "contains":
		return strings.Contains(s, le.Pattern)
	case "prefix", "startswith":
		return strings.HasPrefix(s, le.Pattern)
	case "suffix", "endswith":
		return strings.HasSuffix(s, le.Pattern)
	case "regex", "regexp":
		return le.re != nil && le.re.MatchString(s)
	}
	return false
}

// IPToRange returns the network of ip with the mask cidr ("/64" or "64"),
// or "" when either does not parse.
func IPToRange(ip, cidr string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	bits, err := strconv.Atoi(strings.TrimPrefix(cidr, "/"))
	if err != nil || bits < 0 || bits > a.BitLen() {
		return ""
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// globMatch matches name against a pattern where * is any run and ? any
// one character, as CrowdSec's Match does.
func globMatch(pattern, name string) bool {
	px, nx := 0, 0
	nextPx, nextNx := 0, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			c := pattern[px]
			switch c {
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			case '*':
				nextPx = px
				nextNx = nx + 1
				px++
				continue
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if 0 < nextNx && nextNx <= len(name) {
			px = nextPx
			nx = nextNx
			continue
		}
		return false
	}
	return true
}

// jsonPath walks a dotted path ("a.b", "a[0].b", "a.0") through a JSON blob.
func jsonPath(blob, path string) (any, bool) {
	var v any
	if err := json.Unmarshal([]byte(blob), &v); err != nil {
		return nil, false
	}
	if path == "" {
		return v, true
	}
	path = strings.ReplaceAll(path, "[", ".")
	path = strings.ReplaceAll(path, "]", "")
	for _, k := range strings.Split(path, ".") {
		if k == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			n, ok := x[k]
			if !ok {
				return nil, false
			}
			v = n
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func parseKVFunc(lax bool) func(p ...any) (any, error) {
	return func(p ...any) (any, error) {
		if len(p) != 3 {
			return nil, fmt.Errorf("ParseKV: got %d arguments, want 3", len(p))
		}
		target, ok := p[1].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("ParseKV: target is %T, want a map", p[1])
		}
		kv := ParseKV(ToString(p[0]), lax)
		m := make(map[string]any, len(kv))
		for k, v := range kv {
			m[k] = v
		}
		target[ToString(p[2])] = m
		return nil, nil
	}
}

// jsonExtractRaw returns the value at path as JSON spells it: strings
// without their quotes but still escaped (hub patterns expect the \"),
// other values as raw JSON text.
func jsonExtractRaw(blob, path string) string {
	raw := json.RawMessage(blob)
	path = strings.ReplaceAll(path, "[", ".")
	path = strings.ReplaceAll(path, "]", "")
	for _, k := range strings.Split(path, ".") {
		if k == "" {
			continue
		}
		t := bytes.TrimSpace(raw)
		if len(t) == 0 {
			return ""
		}
		switch t[0] {
		case '{':
			var m map[string]json.RawMessage
			if json.Unmarshal(t, &m) != nil {
				return ""
			}
			n, ok := m[k]
			if !ok {
				return ""
			}
			raw = n
		case '[':
			var a []json.RawMessage
			i, err := strconv.Atoi(k)
			if json.Unmarshal(t, &a) != nil || err != nil || i < 0 || i >= len(a) {
				return ""
			}
			raw = a[i]
		default:
			return ""
		}
	}
	t := bytes.TrimSpace(raw)
	if !json.Valid(t) {
		return ""
	}
	if len(t) >= 2 && t[0] == '"' {
		return string(t[1 : len(t)-1])
	}
	if string(t) == "null" {
		return ""
	}
	return string(t)
}

// kvPattern is CrowdSec's key=value grammar: a quoted value, or a bare
// one that stops at spaces and at '='.
var kvPattern = regexp.MustCompile(`([^=\s]+)=(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^=\s]+)|\s*)`)

// kvKeyPattern finds the start of each "key=" for the lax grammar.
var kvKeyPattern = regexp.MustCompile(`(?:^|\s)([^\s=]+)=`)

// ParseKV splits `k=v k2="v 2"` into a map. In lax mode a bare value runs
// up to the next " key=", so it may hold spaces.
func ParseKV(s string, lax bool) map[string]string {
	out := map[string]string{}
	if lax {
		locs := kvKeyPattern.FindAllStringSubmatchIndex(s, -1)
		for i, l := range locs {
			key := s[l[2]:l[3]]
			end := len(s)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			v := strings.TrimSpace(s[l[1]:end])
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			out[key] = v
		}
		return out
	}
	for _, m := range kvPattern.FindAllStringSubmatch(s, -1) {
		v := m[3]
		if m[2] != "" {
			v = m[2]
		}
		out[m[1]] = v
	}
	return out
}

func medianInterval(v any) time.Duration {
	var ts []time.Time
	switch x := v.(type) {
	case []time.Time:
		ts = append(ts, x...)
	case []any:
		for _, i := range x {
			if t, ok := i.(time.Time); ok {
				ts = append(ts, t)
			}
		}
	}
	if len(ts) < 2 {
		return 0
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	d := make([]time.Duration, 0, len(ts)-1)
	for i := 1; i < len(ts); i++ {
		d = append(d, ts[i].Sub(ts[i-1]))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	return (d[n/2-1] + d[n/2]) / 2
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat := (lat2 - lat1) * rad
	dlon := (lon2 - lon1) * rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func distinct(v any) []any {
	var out []any
	seen := map[any]bool{}
	add := func(x any) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	switch x := v.(type) {
	case []any:
		for _, i := range x {
			add(i)
		}
	case []string:
		for _, i := range x {
			add(i)
		}
	}
	return out
}
